package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/btnsd/btnsd/fingerprints"
)

// shortHex is how many hex digits btnsctl shows as a key's handle: enough
// to be unique in any store people keep, and Resolve says so if not.
const shortHex = 12

func newKeyCmd(g *globals) *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "key",
		Short: "Manage the raw public keys of BTNS peers",
		Long: `Manage the key store: the raw public keys of BTNS peers, named by fingerprint
(SHA-256 of the key's SubjectPublicKeyInfo), with a name, the IKE identity the
peer asserts, and whether BTNS policies may trust it.

A key is named on the command line by its fingerprint (SHA256:<base64> or hex),
a unique prefix of either (at least 4 characters), its keyid (as swanctl
--list-sas prints it), or its name.

The store lives in <root>/pubkeys/fp; these commands change it directly, with
or without btnsd running.`,
	})
	cmd.AddCommand(
		newKeyAddCmd(g),
		newKeyTrustCmd(g, fingerprints.Trusted),
		newKeyTrustCmd(g, fingerprints.Untrusted),
		newKeyRevokeCmd(g),
		newKeyListCmd(g),
		newKeyShowCmd(g),
		newKeyFpCmd(g),
		newKeyExportCmd(g),
		newKeyHostCmd(g),
	)
	return cmd
}

func (g *globals) store() (*fingerprints.Store, error) {
	return fingerprints.Open(g.root)
}

// resolve opens the store and finds the key an argument names.
func (g *globals) resolve(arg string) (*fingerprints.Store, fingerprints.Fingerprint, error) {
	s, err := g.store()
	if err != nil {
		return nil, fingerprints.Fingerprint{}, err
	}
	fp, err := s.Resolve(arg)
	return s, fp, err
}

// writeErr adds a hint to the usual reason a write to the store fails.
func writeErr(err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w (the key store belongs to root: run btnsctl as root)", err)
	}
	return err
}

func newKeyAddCmd(g *globals) *cobra.Command {
	var (
		name, comment, identity string
		trust                   bool
		scopes                  []string
	)
	cmd := &cobra.Command{
		Use:   "add FILE|- [FILE...]",
		Short: "Add peers' public keys to the store",
		Long: `Add public keys to the store, untrusted unless --trust is given. A FILE holds one
key: PEM (SubjectPublicKeyInfo or PKCS#1 RSA), DER, an OpenSSH public key line,
or what strongSwan's "pki --pub" writes; "-" reads standard input. RSA (2048
bits or more), ECDSA (P-256, P-384, P-521) and Ed25519 keys are accepted.

The name defaults to the comment of an OpenSSH key, else the file's name.
Several files are added all or none.`,
		Example: `  btnsctl key add --name db1 --trust db1.pem
  ssh db1 cat /etc/ssh/ssh_host_ed25519_key.pub | btnsctl key add --name db1 -
  btnsctl key add --identity vpn.example.org --scope office --trust peer.pub`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 && (name != "" || identity != "") {
				return usagef("--name and --identity name one key: give one FILE")
			}
			id, err := fingerprints.ParseIdentity(identity)
			if err != nil {
				return usageError{err}
			}
			scope, err := fingerprints.NewScope(scopes)
			if err != nil {
				return usageError{err}
			}
			actor := g.env.Actor()
			var entries []fingerprints.Entry
			for _, f := range args {
				k, err := fingerprints.ReadKeyFile(f, cmd.InOrStdin())
				if err != nil {
					return err
				}
				m := fingerprints.Meta{
					Name:     defaultName(name, k, f),
					Comment:  comment,
					Identity: id,
					Scope:    scope,
					Added:    g.env.Now().UTC().Truncate(time.Second),
					AddedBy:  actor,
				}
				if trust {
					m.Trust = fingerprints.Trusted
				}
				entries = append(entries, fingerprints.Entry{Key: k, Meta: m})
			}
			s, err := g.store()
			if err != nil {
				return err
			}
			if len(entries) == 1 {
				_, err = s.Add(entries[0].Key, entries[0].Meta)
			} else {
				_, err = s.AddMany(entries)
			}
			if err != nil {
				return writeErr(err)
			}
			out := cmd.OutOrStdout()
			for _, e := range entries {
				fmt.Fprintf(out, "added %s %s", e.Key.Fingerprint, e.Key.Description())
				if e.Name != "" {
					fmt.Fprintf(out, " %q", e.Name)
				}
				fmt.Fprintf(out, ": %s\n", trustText(e.Meta))
			}
			switch {
			case trust:
			case len(entries) == 1:
				fmt.Fprintf(out, "trust with: btnsctl key trust %s\n", entries[0].Key.Fingerprint.Hex()[:shortHex])
			default:
				fmt.Fprintln(out, "trust with: btnsctl key trust KEY")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "short name for the key (default: the OpenSSH comment, or the file name)")
	f.StringVar(&comment, "comment", "", "free text kept with the key")
	f.StringVar(&identity, "identity", "", "IKE identity the peer asserts, if it is no btnsd host: host name, IP address or keyid:#<hex>")
	f.BoolVar(&trust, "trust", false, "trust the key at once")
	f.StringSliceVar(&scopes, "scope", nil, "accept the key only in BTNS policies of this scope (repeatable; default: all)")
	return cmd
}

// defaultName picks a name for a key added without --name.
func defaultName(flag string, k *fingerprints.PublicKey, file string) string {
	switch {
	case flag != "":
		return flag
	case k.Comment != "":
		return strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return -1
			}
			return r
		}, k.Comment)
	case file != "-":
		base := filepath.Base(file)
		if ext := filepath.Ext(base); ext != base {
			base = strings.TrimSuffix(base, ext)
		}
		return base
	}
	return ""
}

func trustText(m fingerprints.Meta) string {
	if m.Trust != fingerprints.Trusted {
		return "untrusted"
	}
	return "trusted for " + scopeText(m.Scope)
}

func scopeText(s fingerprints.Scope) string {
	if s.All() {
		return "all BTNS policies"
	}
	return "BTNS policies of scope " + strings.Join(s, ", ")
}

func newKeyTrustCmd(g *globals, t fingerprints.Trust) *cobra.Command {
	var (
		scopes []string
		all    bool
	)
	cmd := &cobra.Command{
		Use:   "trust KEY",
		Short: "Let BTNS policies accept a key",
		Long: `Mark a key trusted: BTNS policies whose scope the key has accept a peer that
proves it holds the key. --scope limits the key to policies of the named
scopes; --all-scopes lifts the limit. Without either the scope stays as it was.`,
		Args: exactArgs(1),
	}
	if t == fingerprints.Untrusted {
		cmd.Use, cmd.Short = "untrust KEY", "Stop BTNS policies accepting a key (it stays in the store)"
		cmd.Long = `Mark a key untrusted: no BTNS policy accepts it any more. btnsd drops its
connections; the key and its metadata stay in the store ("revoke" removes them).`
	} else {
		cmd.Flags().StringSliceVar(&scopes, "scope", nil, "accept the key only in BTNS policies of this scope (repeatable)")
		cmd.Flags().BoolVar(&all, "all-scopes", false, "accept the key in all BTNS policies")
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := exclusive(cmd, "scope", "all-scopes"); err != nil {
			return err
		}
		scope, err := fingerprints.NewScope(scopes)
		if err != nil {
			return usageError{err}
		}
		s, fp, err := g.resolve(args[0])
		if err != nil {
			return err
		}
		actor := g.env.Actor()
		e, err := s.Update(fp, func(m *fingerprints.Meta) error {
			m.Trust, m.Changed, m.ChangedBy = t, g.env.Now().UTC().Truncate(time.Second), actor
			if len(scope) > 0 || all {
				m.Scope = scope
			}
			return nil
		})
		if err != nil {
			return writeErr(err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s %s: %s\n", fp, quoted(e.Name), trustText(e.Meta))
		return nil
	}
	return cmd
}

func quoted(name string) string {
	if name == "" {
		return "(no name)"
	}
	return fmt.Sprintf("%q", name)
}

func newKeyRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke KEY",
		Short: "Remove a key from the store",
		Long: `Remove a key and its metadata from the store. btnsd unloads the key's
connections and ends its SAs. To keep the key on record but stop trusting it,
use "untrust".`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, fp, err := g.resolve(args[0])
			if err != nil {
				return err
			}
			e, err := s.Remove(fp)
			if err != nil {
				return writeErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s %s: removed from the store\n", fp, quoted(e.Name))
			return nil
		},
	}
}

// keyJSON is how list and show print a key with --json.
type keyJSON struct {
	Fingerprint fingerprints.Fingerprint `json:"fingerprint"`
	Hex         string                   `json:"hex"`
	KeyID       fingerprints.KeyID       `json:"keyid"`
	Type        fingerprints.KeyType     `json:"type"`
	Bits        int                      `json:"bits"`
	Curve       string                   `json:"curve,omitempty"`
	fingerprints.Meta
	File string `json:"file"`
}

func toJSON(s *fingerprints.Store, e fingerprints.Entry) keyJSON {
	k := e.Key
	return keyJSON{k.Fingerprint, k.Fingerprint.Hex(), k.KeyID, k.Type, k.Bits, k.Curve, e.Meta, s.KeyPath(k.Fingerprint)}
}

func newKeyListCmd(g *globals) *cobra.Command {
	var (
		asJSON, trusted, untrusted bool
		scope                      string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the keys in the store",
		Long: `List the keys in the store, by name. Files in the store that could not be read
are reported on standard error and skipped.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := exclusive(cmd, "trusted", "untrusted"); err != nil {
				return err
			}
			s, err := g.store()
			if err != nil {
				return err
			}
			for _, p := range s.Problems() {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: skipped %s\n", p)
			}
			entries := slices.DeleteFunc(s.List(), func(e fingerprints.Entry) bool {
				return (trusted && e.Trust != fingerprints.Trusted) ||
					(untrusted && e.Trust == fingerprints.Trusted) ||
					(scope != "" && !e.Scope.Includes(scope))
			})
			slices.SortStableFunc(entries, func(a, b fingerprints.Entry) int { return strings.Compare(a.Name, b.Name) })
			if asJSON {
				list := make([]keyJSON, len(entries))
				for i, e := range entries {
					list[i] = toJSON(s, e)
				}
				return printJSON(cmd.OutOrStdout(), list)
			}
			return printTable(cmd.OutOrStdout(), entries)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.BoolVar(&trusted, "trusted", false, "only trusted keys")
	f.BoolVar(&untrusted, "untrusted", false, "only untrusted keys")
	f.StringVar(&scope, "scope", "", "only keys that BTNS policies of this scope accept if trusted")
	return cmd
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printTable(w io.Writer, entries []fingerprints.Entry) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tNAME\tTYPE\tTRUST\tSCOPE\tIDENTITY\tADDED\tFINGERPRINT")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			e.Key.Fingerprint.Hex()[:shortHex], dash(e.Name), e.Key.Description(), e.Trust, e.Scope,
			dash(e.Identity.String()), e.Added.Format(time.DateOnly), e.Key.Fingerprint)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newKeyShowCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show KEY",
		Short: "Show a key: every form of its fingerprint, its keyid and metadata",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, fp, err := g.resolve(args[0])
			if err != nil {
				return err
			}
			e, ok := s.Get(fp)
			if !ok {
				return fmt.Errorf("%w: %s", fingerprints.ErrNotFound, fp)
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), toJSON(s, e))
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 2, ' ', 0)
			printNames(tw, e.Key)
			id := e.Identity.String()
			if id == "" {
				id = "(none: the peer asserts its keyid)"
			}
			rows := [][2]string{
				{"name", dash(e.Name)},
				{"comment", dash(e.Comment)},
				{"IKE identity", id},
				{"trust", trustText(e.Meta)},
				{"added", fmt.Sprintf("%s by %s", e.Added.Format(time.RFC3339), e.AddedBy)},
			}
			if !e.Changed.IsZero() {
				rows = append(rows, [2]string{"changed", fmt.Sprintf("%s by %s", e.Changed.Format(time.RFC3339), e.ChangedBy)})
			}
			rows = append(rows, [2]string{"file", s.KeyPath(fp)})
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// printNames writes every name of a key, one per line, to a tabwriter.
func printNames(tw *tabwriter.Writer, k *fingerprints.PublicKey) {
	fmt.Fprintf(tw, "fingerprint\t%s\n", k.Fingerprint)
	fmt.Fprintf(tw, "hex\t%s\n", k.Fingerprint.Hex())
	fmt.Fprintf(tw, "keyid\t%s\n", k.KeyID)
	fmt.Fprintf(tw, "swanctl id\t%s\n", k.KeyID.Swanctl())
	fmt.Fprintf(tw, "type\t%s\n", k.Description())
}

func newKeyFpCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "fp FILE|- [FILE...]",
		Short: "Print the fingerprints of key files, without touching the store",
		Long: `Print the fingerprint (SHA-256 of the SubjectPublicKeyInfo), its hex form and
the keyid of each key file, as "btnsctl key add" would store it. "-" reads
standard input. The store is not read. (The iked BTNS patch calls this
"rsafp".)

Note: for an OpenSSH key this is not what "ssh-keygen -l" prints; that hashes
the SSH encoding of the key.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			print, ok := map[string]func(*fingerprints.PublicKey) string{
				"sha256": func(k *fingerprints.PublicKey) string { return k.Fingerprint.String() },
				"hex":    func(k *fingerprints.PublicKey) string { return k.Fingerprint.Hex() },
				"keyid":  func(k *fingerprints.PublicKey) string { return k.KeyID.String() },
			}[format]
			if !ok && format != "all" {
				return usagef("--format %q: want all, sha256, hex or keyid", format)
			}
			var failed error
			for i, f := range args {
				k, err := fingerprints.ReadKeyFile(f, cmd.InOrStdin())
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", cmd.Root().Name(), err)
					failed = errors.New("some files hold no usable key")
					continue
				}
				if print != nil {
					fmt.Fprintln(cmd.OutOrStdout(), print(k))
					continue
				}
				if i > 0 {
					fmt.Fprintln(cmd.OutOrStdout())
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 2, ' ', 0)
				fmt.Fprintf(tw, "file\t%s\n", f)
				printNames(tw, k)
				if k.Comment != "" {
					fmt.Fprintf(tw, "comment\t%s\n", k.Comment)
				}
				tw.Flush()
			}
			return failed
		},
	}
	cmd.Flags().StringVar(&format, "format", "all", "what to print: all, sha256, hex or keyid (one line per file)")
	return cmd
}

// exportFlags are the output options of export and host.
type exportFlags struct {
	format, dnsName, gateway string
	precedence               uint8
}

func (x *exportFlags) add(cmd *cobra.Command, formats string) {
	f := cmd.Flags()
	f.StringVar(&x.format, "format", x.format, "output: "+formats)
	f.StringVar(&x.dnsName, "dns-name", "", "owner name of the IPSECKEY record (default: the key's FQDN identity)")
	f.StringVar(&x.gateway, "gateway", "", "IPSECKEY gateway: address or host name (default: none)")
	f.Uint8Var(&x.precedence, "precedence", 10, "IPSECKEY precedence")
}

// ipseckey prints the IPSECKEY record line of k.
func (x *exportFlags) ipseckey(w io.Writer, k *fingerprints.PublicKey, id fingerprints.Identity) error {
	owner := x.dnsName
	if owner == "" && id.Type == fingerprints.IDFQDN {
		owner = id.Value
	}
	if owner == "" {
		return usagef("--dns-name is needed: the key has no FQDN identity to publish it under")
	}
	rec, err := k.IPSECKEYRecord(owner, x.precedence, x.gateway)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, rec)
	return err
}

func newKeyExportCmd(g *globals) *cobra.Command {
	x := exportFlags{format: "pem"}
	cmd := &cobra.Command{
		Use:   "export KEY",
		Short: "Print a stored key as PEM, or as an IPSECKEY record for DNS",
		Long: `Print a stored key as PEM (SubjectPublicKeyInfo, what charon's pubkeys option and
"pki --pub --outform pem" use), or as a DNS IPSECKEY record line (RFC 4025) for
charon's ipseckey plugin and other IKE implementations. IPSECKEY algorithms: 2
RSA (RFC 3110 key format), 3 ECDSA (RFC 8005; P-256 and P-384 only), 4 EdDSA
(RFC 9373).`,
		Example: `  btnsctl key export db1 > db1.pem
  btnsctl key export db1 --format ipseckey --dns-name db1.example.org`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if x.format != "pem" && x.format != "ipseckey" {
				return usagef("--format %q: want pem or ipseckey", x.format)
			}
			s, fp, err := g.resolve(args[0])
			if err != nil {
				return err
			}
			e, ok := s.Get(fp)
			if !ok {
				return fmt.Errorf("%w: %s", fingerprints.ErrNotFound, fp)
			}
			if x.format == "ipseckey" {
				return x.ipseckey(cmd.OutOrStdout(), e.Key, e.Identity)
			}
			_, err = cmd.OutOrStdout().Write(e.Key.PEM())
			return err
		},
	}
	x.add(cmd, "pem or ipseckey")
	return cmd
}

func newKeyHostCmd(g *globals) *cobra.Command {
	var (
		path   string
		create bool
	)
	x := exportFlags{format: "text"}
	cmd := &cobra.Command{
		Use:   "host",
		Short: "Show this host's public key, for the administrators of its peers",
		Long: `Show the fingerprint and public key of this host's btnsd key, which btnsd
creates on first start in <root>/private/host.pem. Give the output to the
administrator of each peer: on the peer, "btnsctl key add --trust" the PEM
block, and compare the fingerprint over a channel you trust.

Reading the private key needs root. --create makes the key now if btnsd has
not yet.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if x.format != "text" && x.format != "pem" && x.format != "ipseckey" {
				return usagef("--format %q: want text, pem or ipseckey", x.format)
			}
			if path == "" {
				path = fingerprints.HostKeyPath(g.root)
			}
			load := fingerprints.LoadHostKey
			if create {
				load = fingerprints.LoadOrCreateHostKey
			}
			_, pub, err := load(path)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%w: start btnsd once, or run: btnsctl key host --create", err)
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch x.format {
			case "pem":
				_, err = out.Write(pub.PEM())
				return err
			case "ipseckey":
				return x.ipseckey(out, pub, fingerprints.Identity{})
			}
			tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
			printNames(tw, pub)
			fmt.Fprintf(tw, "file\t%s\n", path)
			tw.Flush()
			fmt.Fprintf(out, "\n%s", pub.PEM())
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "host-key", "", "private key file (default <root>/private/host.pem)")
	cmd.Flags().BoolVar(&create, "create", false, "create an Ed25519 host key if there is none")
	x.add(cmd, "text, pem or ipseckey")
	return cmd
}
