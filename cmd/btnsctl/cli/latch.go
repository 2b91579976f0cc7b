package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/btnsd/btnsd/api"
)

func newLatchCmd(g *globals) *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "latch",
		Short: "Connection latches (RFC 5660): list, show, close, watch",
		Long: `A connection latch binds a TCP or UDP flow to the peer and the protection
it started with. btnsd latches the flows of BTNS children automatically
(latch = yes, the default) and watches them: a latch goes BROKEN when an SA
with another peer or other protection covers the flow, or when its SAs are
gone; with on_break = reset its socket is destroyed at once.`,
	})
	cmd.AddCommand(newLatchListCmd(g), newLatchShowCmd(g), newLatchCloseCmd(g), newLatchWatchCmd(g))
	return cmd
}

func parseLatchID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, usagef("latch id %q: want a positive number (see btnsctl latch list)", s)
	}
	return id, nil
}

func newLatchListCmd(g *globals) *cobra.Command {
	var asJSON bool
	var state string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the latches",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ls, err := g.client().Latches(cmd.Context())
			if err != nil {
				return err
			}
			if state != "" {
				var keep []api.Latch
				for _, l := range ls {
					if strings.EqualFold(l.State, state) {
						keep = append(keep, l)
					}
				}
				ls = keep
			}
			if asJSON {
				if ls == nil {
					ls = []api.Latch{}
				}
				return writeJSON(cmd, ls)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tSTATE\tPROTO\tLOCAL\tREMOTE\tPEER\tCHILD\tON BREAK")
			for _, l := range ls {
				remote := l.Remote
				if remote == "" {
					remote = "*"
				}
				child := "-"
				if l.Protection.Conn != "" {
					child = l.Protection.Conn + "/" + l.Protection.Child
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.ID, l.State, l.Proto, l.Local, remote,
					peerString(l.Peer), child, l.Disposition)
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&state, "state", "", "only latches in this state (LISTENER, ESTABLISHED, BROKEN)")
	return cmd
}

func peerString(p api.Peer) string {
	switch p.Kind {
	case "key":
		return p.Fingerprint
	case "anonymous":
		return fmt.Sprintf("anonymous #%d", p.Lineage)
	}
	return "-"
}

func newLatchShowCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a latch: its state and every latched parameter (INQUIRE_LATCH)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseLatchID(args[0])
			if err != nil {
				return err
			}
			c := g.client()
			l, err := c.Latch(cmd.Context(), id)
			if err != nil {
				return err
			}
			cb, cbErr := c.ChannelBinding(cmd.Context(), id)
			if asJSON {
				out := struct {
					*api.Latch
					ChannelBinding *api.ChannelBinding `json:"channel_binding,omitempty"`
					NoBinding      string              `json:"no_channel_binding,omitempty"`
				}{Latch: l, ChannelBinding: cb}
				if cbErr != nil {
					out.NoBinding = cbErr.Error()
				}
				return writeJSON(cmd, out)
			}
			printLatch(cmd.OutOrStdout(), l)
			if cbErr != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "channel binding: none (%v)\n", cbErr)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "channel binding: %s\n", cb.Value)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printLatch(w io.Writer, l *api.Latch) {
	remote := l.Remote
	if remote == "" {
		remote = "* (listener)"
	}
	p := l.Protection
	fmt.Fprintf(w, "latch %d: %s\n", l.ID, l.State)
	fmt.Fprintf(w, "flow:        %s %s -> %s (socket cookie %d)\n", l.Proto, l.Local, remote, l.Cookie)
	fmt.Fprintf(w, "origin:      %s", l.Origin)
	if l.Listener != 0 {
		fmt.Fprintf(w, " (accepted on listener latch %d)", l.Listener)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "peer:        %s", peerString(l.Peer))
	if l.Peer.ID != "" {
		fmt.Fprintf(w, " (IKE identity %s)", l.Peer.ID)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "protection:  %s %s%s, connection %s, child %s, local identity %s\n", p.Protocol, p.Mode, map[bool]string{true: " (UDP-encapsulated)", false: ""}[p.Encap], p.Conn, p.Child, p.LocalID)
	qop := p.Encr
	if p.EncrKeySize > 0 {
		qop += fmt.Sprintf("-%d", p.EncrKeySize)
	}
	if p.Integ != "" {
		qop += "/" + p.Integ
	}
	if p.DHGroup != "" {
		qop += "/" + p.DHGroup
	}
	if l.QoPIndeterminate {
		qop += " (indeterminate: the SA covers more than this flow)"
	}
	fmt.Fprintf(w, "quality:     %s\n", qop)
	fmt.Fprintf(w, "on break:    %s\n", l.Disposition)
	fmt.Fprintf(w, "SAs:         %v", l.SAs)
	if len(l.Conflicts) > 0 {
		fmt.Fprintf(w, ", conflicting %v", l.Conflicts)
	}
	fmt.Fprintln(w)
	for _, k := range l.KernelSAs {
		fmt.Fprintf(w, "kernel SA:   child %d reqid %d, %s %s, SPIs in %s out %s\n", k.Child, k.ReqID, k.Protocol, k.Mode, k.SPIIn, k.SPIOut)
	}
	fmt.Fprintf(w, "since:       %s (created %s)\n", l.Changed.Format(time.RFC3339), l.Created.Format(time.RFC3339))
	fmt.Fprintf(w, "reason:      %s\n", l.Reason)
	if l.Peer.PublicKey != "" {
		fmt.Fprintf(w, "peer key:\n%s", l.Peer.PublicKey)
	}
}

func newLatchCloseCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "close ID",
		Short: "Close a latch administratively: its flow is reset",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseLatchID(args[0])
			if err != nil {
				return err
			}
			if err := g.client().CloseLatch(cmd.Context(), id, reason); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "latch %d closed\n", id)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "closed by an administrator", "the reason given in the alert")
	return cmd
}

func newLatchWatchCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Follow the latch alerts: every transition, as it happens",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			return g.client().Alerts(cmd.Context(), func(a api.Alert) error {
				if asJSON {
					return writeJSON(cmd, a)
				}
				remote := a.Remote
				if remote == "" {
					remote = "*"
				}
				_, err := fmt.Fprintf(out, "%s latch %d %s %s -> %s: %s -> %s: %s\n",
					a.At.Format("15:04:05.000"), a.Latch, a.Proto, a.Local, remote, a.From, a.To, a.Reason)
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per alert")
	return cmd
}
