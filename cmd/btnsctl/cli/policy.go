package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/btnsd/btnsd/api"
	"github.com/btnsd/btnsd/btnsauth"
	"github.com/btnsd/btnsd/configs"
	"github.com/btnsd/btnsd/fingerprints"
	"github.com/btnsd/btnsd/vici"
)

func newPolicyCmd(g *globals) *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "policy",
		Short: "Check policy files, and see which ones btnsd runs",
	})
	cmd.AddCommand(newPolicyStatusCmd(g), newPolicyCheckCmd(g), newPolicyRenderCmd(g))
	return cmd
}

func newPolicyStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each policy file's state in the running btnsd, and the connections it loaded",
		Long: `Show each policy file of the running btnsd: in force as it is ("current"),
broken with its last good version in force ("last-good", with the error at
file:line:col), or broken with nothing in force ("none"); then the charon
connections btnsd owns and whether charon has their current version.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd, struct {
					Policies []api.PolicyFile `json:"policies"`
					Conns    []api.Conn       `json:"conns"`
				}{s.Policies, s.Conns})
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "FILE\tRUNNING\tCONNECTIONS")
			for _, f := range s.Policies {
				fmt.Fprintf(w, "%s\t%s\t%s\n", f.File, f.Running, strings.Join(f.Conns, ", "))
			}
			w.Flush()
			for _, f := range s.Policies {
				if f.Error != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "\n%s\n", f.Error)
				}
			}
			fmt.Fprintln(cmd.OutOrStdout())
			w = tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "CHARON CONNECTION\tPOLICY\tPEER\tLOADED")
			for _, c := range s.Conns {
				peer := shortFP(c.Peer)
				if c.Anonymous {
					peer = "anonymous"
				}
				loaded := "yes"
				if !c.Loaded {
					loaded = "no"
					if c.Error != "" {
						loaded += ": " + c.Error
					}
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", c.Name, c.Policy, peer, loaded)
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func shortFP(hexFP string) string {
	if hexFP == "" {
		return "-"
	}
	fp, err := fingerprints.ParseFingerprint(hexFP)
	if err != nil {
		return hexFP
	}
	return fp.String()
}

// loadPolicyFile loads one policy file as the daemon would, with its
// relative key files resolved beside it.
func loadPolicyFile(path string) (*configs.File, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, err
	}
	f := configs.LoadFile(os.DirFS("/"), strings.TrimPrefix(abs, "/"), configs.Options{})
	return f, nil
}

// checkHostKey stands in for the host key when checking a file offline:
// whether a BTNS connection can be expanded does not depend on which key.
func checkHostKey() *fingerprints.PublicKey {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k, _ := fingerprints.NewPublicKey(pub)
	return k
}

func newPolicyCheckCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE...",
		Short: "Check policy files offline; exit 1 if any is bad",
		Long: `Parse and validate policy files as btnsd would, without btnsd or charon:
the swanctl.conf syntax, btnsd's btns sections, and the rules of BTNS
connections (btnsd owns their remote authentication). Errors are printed as
file:line:col: message. Exit code 0 when every file is good, 1 otherwise.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			host := checkHostKey()
			bad := 0
			for _, path := range args {
				f, err := loadPolicyFile(path)
				if err != nil {
					return err
				}
				errs := configs.Errors(f.Err)
				if f.Err == nil {
					_, errs = btnsauth.ExpandAll(f.Conns, nil, host)
				}
				for _, e := range errs {
					fmt.Fprintln(cmd.ErrOrStderr(), "/"+strings.TrimPrefix(e.Error(), "/"))
				}
				if len(errs) > 0 {
					bad++
					continue
				}
				var names []string
				for _, c := range f.Conns {
					kind := "swanctl"
					if c.Policy.Enabled {
						kind = "btns"
					}
					names = append(names, c.Name+" ("+kind+")")
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok: %s\n", path, strings.Join(names, ", "))
			}
			if bad > 0 {
				return fmt.Errorf("%d of %d file(s) bad", bad, len(args))
			}
			return nil
		},
	}
}

func newPolicyRenderCmd(g *globals) *cobra.Command {
	var hostKey string
	cmd := &cobra.Command{
		Use:   "render FILE",
		Short: "Print, as JSON, the load-conn messages btnsd would send for a policy file",
		Long: `Print the exact load-conn messages btnsd would send charon for the
connections of FILE, given the key store under --root and this host's key:
a JSON array of {"<charon connection>": {...}} objects, in the order btnsd
sends them. Reading the host key needs root.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := loadPolicyFile(args[0])
			if err != nil {
				return err
			}
			if f.Err != nil {
				return f.Err
			}
			if hostKey == "" {
				hostKey = fingerprints.HostKeyPath(g.root)
			}
			_, pub, err := fingerprints.LoadHostKey(hostKey)
			if err != nil {
				return fmt.Errorf("host key: %w", err)
			}
			store, err := fingerprints.Open(g.root)
			if err != nil {
				return err
			}
			conns, errs := btnsauth.ExpandAll(f.Conns, store.List(), pub)
			if len(errs) > 0 {
				return errors.Join(errs...)
			}
			msgs := make([]*vici.Msg, 0, len(conns))
			for _, c := range conns {
				m := vici.NewMsg()
				m.Set(c.Name, c.Body)
				msgs = append(msgs, m)
			}
			return writeJSON(cmd, msgs)
		},
	}
	cmd.Flags().StringVar(&hostKey, "host-key", "", "the host's private key (default <root>/private/host.pem)")
	return cmd
}

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running btnsd at a glance",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd, s)
			}
			out := cmd.OutOrStdout()
			charon := "connected"
			if !s.Charon.Connected {
				charon = "NOT connected"
			}
			loaded, bad := 0, 0
			for _, c := range s.Conns {
				if c.Loaded {
					loaded++
				}
			}
			for _, f := range s.Policies {
				if f.Error != "" {
					bad++
				}
			}
			fmt.Fprintf(out, "btnsd %s, up since %s\n", s.Version, s.Started.Format("2006-01-02 15:04:05"))
			fmt.Fprintf(out, "host key:    %s (keyid %s)\n", s.HostKey.Fingerprint, s.HostKey.KeyID)
			fmt.Fprintf(out, "charon:      %s (%s), %d restart(s) seen\n", charon, s.Charon.Socket, s.Charon.Restarts)
			fmt.Fprintf(out, "policies:    %d file(s), %d with errors\n", len(s.Policies), bad)
			fmt.Fprintf(out, "connections: %d wanted, %d loaded\n", len(s.Conns), loaded)
			fmt.Fprintf(out, "keys:        %d, %d trusted\n", s.Keys.Total, s.Keys.Trusted)
			fmt.Fprintf(out, "audit:       %d finding(s)\n", len(s.Audit))
			for _, e := range s.Errors {
				fmt.Fprintf(out, "error:       %s\n", e)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newAuditCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the connections btnsd does not own that BTNS would weaken",
		Long: `charon trusts every public key named in any connection globally. A
connection btnsd does not own that authenticates peers by public key with
remote id %any and no pinned keys or CA would therefore accept every key
btnsd trusts ("unsafe": btnsd refuses to start beside it unless started with
--allow-unsafe-foreign); one with another remote id and no pinned keys
accepts the pinned key of that identity ("warning"). Exit code 1 when there
is an unsafe finding.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				if err := writeJSON(cmd, s.Audit); err != nil {
					return err
				}
			} else if len(s.Audit) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no findings: no foreign connection would accept the keys btnsd pins")
			}
			unsafe := 0
			for _, f := range s.Audit {
				if !asJSON {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: connection %q, %s: %s\n", f.Severity, f.Conn, f.Round, f.Reason)
				}
				if f.Severity == string(btnsauth.Unsafe) {
					unsafe++
				}
			}
			if unsafe > 0 {
				return fmt.Errorf("%d unsafe connection(s)", unsafe)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (g *globals) client() *api.Client { return api.NewClient(g.socket) }

func writeJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
