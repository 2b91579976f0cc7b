// Package cli holds btnsctl's commands. NewRootCmd builds the command tree
// without globals, so that tests run it with their own arguments, streams
// and environment; Execute runs it for the real process.
//
// Each subcommand lives in its own file and is added in NewRootCmd:
// key.go (the key store), policy.go (policy files, status, audit),
// latch.go (connection latches).
// Commands that talk to the daemon use the --socket flag.
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/btnsd/btnsd/fingerprints"
)

// Exit codes of btnsctl.
const (
	ExitOK    = 0 // success
	ExitError = 1 // the command failed
	ExitUsage = 2 // bad command line: unknown command or flag, wrong arguments
)

// Default paths; the flags and the BTNSD_ROOT and BTNSD_SOCKET environment
// variables override them.
const (
	DefaultRoot   = "/etc/btnsd"
	DefaultSocket = "/run/btnsd/btnsd.sock"
)

// Env is what the commands take from the process around them. Tests give
// their own.
type Env struct {
	Getenv func(string) string
	Now    func() time.Time
	// Actor says who runs the command, for the store's records.
	Actor func() fingerprints.Actor
}

// ProcessEnv is the environment of the running process.
func ProcessEnv() Env {
	return Env{
		Getenv: os.Getenv,
		Now:    time.Now,
		Actor:  func() fingerprints.Actor { return fingerprints.CurrentActor(os.Getenv) },
	}
}

// globals are the persistent flags and the environment every subcommand
// sees.
type globals struct {
	env    Env
	root   string // btnsd's state directory: key store, host key
	socket string // btnsd's API socket
}

// NewRootCmd builds btnsctl's command tree.
func NewRootCmd(env Env) *cobra.Command {
	g := &globals{env: env}
	root := group(&cobra.Command{
		Use:   "btnsctl",
		Short: "Control btnsd, Better-Than-Nothing Security for strongSwan",
		Long: `btnsctl manages btnsd: the raw public keys of BTNS peers (key), and, through
the daemon, its policies and connection latches.

Key commands work on the store under --root directly, whether btnsd runs or
not; a running btnsd notices the change.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	})
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&g.root, "root", envOr(env, "BTNSD_ROOT", DefaultRoot),
		"btnsd's state directory (key store, host key) [$BTNSD_ROOT]")
	pf.StringVar(&g.socket, "socket", envOr(env, "BTNSD_SOCKET", DefaultSocket),
		"btnsd's API socket [$BTNSD_SOCKET]")

	root.AddCommand(
		newKeyCmd(g),
		newPolicyCmd(g),
		newStatusCmd(g),
		newAuditCmd(g),
		newLatchCmd(g),
	)
	return root
}

func envOr(env Env, name, def string) string {
	if v := env.Getenv(name); v != "" {
		return v
	}
	return def
}

// Execute runs btnsctl with the process's arguments and streams and returns
// its exit code.
func Execute(ctx context.Context) int {
	return Run(ctx, NewRootCmd(ProcessEnv()), os.Args[1:])
}

// Run runs cmd with args, prints an error to cmd's error stream, and
// returns the exit code: ExitOK, ExitError, or ExitUsage for a bad
// command line.
func Run(ctx context.Context, cmd *cobra.Command, args []string) int {
	cmd.SetArgs(args)
	c, err := cmd.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	if c == nil {
		c = cmd
	}
	fmt.Fprintf(c.ErrOrStderr(), "%s: %v\n", cmd.Name(), err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(c.ErrOrStderr(), "Run '%s --help' for usage.\n", c.CommandPath())
		return ExitUsage
	}
	return ExitError
}

// usageError marks an error in the command line itself.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// group makes cmd a command that only holds subcommands: alone it shows
// its help, with an unknown subcommand it is a usage error (cobra would
// otherwise show help and succeed).
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.SuggestionsMinimumDistance = 2
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
			if s := c.SuggestionsFor(args[0]); len(s) > 0 {
				msg += fmt.Sprintf("; did you mean %q?", s[0])
			}
			return usageError{errors.New(msg)}
		}
		return c.Help()
	}
	return cmd
}

// exactArgs and rangeArgs are cobra's validators with usage errors.
func exactArgs(n int) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("want %d argument(s), got %d", n, len(args))
		}
		return nil
	}
}

// exclusive is cobra's MarkFlagsMutuallyExclusive with a usage error.
func exclusive(cmd *cobra.Command, a, b string) error {
	if cmd.Flags().Changed(a) && cmd.Flags().Changed(b) {
		return usagef("--%s and --%s exclude each other", a, b)
	}
	return nil
}

func minArgs(n int) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) < n {
			return usagef("want at least %d argument(s), got %d", n, len(args))
		}
		return nil
	}
}
