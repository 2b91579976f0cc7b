// Command btnsd is the BTNS companion daemon for strongSwan's charon: it
// loads BTNS connections for the trusted raw public keys of its key store,
// keeps them in step with its policy directory, and serves its API on a
// Unix socket. See btnsd --help.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/btnsd/btnsd/daemon"
	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := newCommand()
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "btnsd:", err)
		code := 1
		if errors.Is(err, daemon.ErrUnsafeForeign) {
			code = 3
		}
		os.Exit(code)
	}
}

func newCommand() *cobra.Command {
	var cfg daemon.Config
	cmd := &cobra.Command{
		Use:   "btnsd",
		Short: "BTNS and connection latching for strongSwan",
		Long: `btnsd brings Better-Than-Nothing Security (RFC 5386/5387) and IPsec connection
latching (RFC 5660) to strongSwan's charon, which it drives over VICI.

It expands the BTNS connections of its policy directory into charon
connections, one per trusted raw public key of its key store (pubkeys/fp),
plus an opt-in anonymous one, and keeps them in step with every change of
the policies and keys. It never changes a connection it did not load, and
refuses to run beside one that would accept the keys it pins (see
btnsctl audit), unless told otherwise.

Exit codes: 0 stopped by a signal, 1 error, 3 unsafe foreign connection.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       daemon.Version,
		RunE: func(cmd *cobra.Command, args []string) error {
			logger := log.New(os.Stderr, "btnsd: ", log.LstdFlags|log.Lmsgprefix)
			cfg.Logf = logger.Printf
			return daemon.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Root, "root", envOr("BTNSD_ROOT", daemon.DefaultRoot), "configuration directory: key store (pubkeys/fp), host key (private/host.pem), policies (policy.d) (env BTNSD_ROOT)")
	f.StringVar(&cfg.PolicyDir, "policy-dir", "", "directory of policy files (*.conf) (default <root>/policy.d)")
	f.StringVar(&cfg.HostKey, "host-key", "", "the host's private key, created as Ed25519 if missing; RSA, ECDSA and Ed25519 keys are accepted (default <root>/private/host.pem)")
	f.StringVar(&cfg.VICISocket, "vici", daemon.DefaultVICISocket, "charon's VICI socket")
	f.StringVar(&cfg.RunDir, "run-dir", daemon.DefaultRunDir, "directory of the API socket btnsd.sock")
	f.StringVar(&cfg.StateDir, "state-dir", daemon.DefaultStateDir, "directory of the state that survives restarts (latch database)")
	f.StringVar(&cfg.APIGroup, "api-group", "", "group whose members may change state through the API, besides root")
	f.BoolVar(&cfg.AllowUnsafeForeign, "allow-unsafe-foreign", false, "run even when a connection btnsd does not own would accept every key btnsd trusts")
	f.StringVar(&cfg.KernelSPD, "kernel-spd", "auto", "watch the kernel's SPD and SAD for changes made outside charon that break latches: auto (once charon's SAs are seen in the kernel, i.e. kernel-netlink), on or off")
	f.DurationVar(&cfg.Debounce, "debounce", 0, "quiet time after a policy or key change before it is applied (default 20ms)")
	return cmd
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
