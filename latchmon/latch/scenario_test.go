package latch

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/*.txt with the actual output")

// TestScenarios runs the stories in testdata/*.txt, in the manner of
// raft's interaction tests (cockroachdb/datadriven): each directive is a
// command line, optional input lines, "----", and the expected output up to
// a blank line. Every file names the RFC 5660 sections it checks. Run with
// -rewrite to regenerate the expected output, then read the diff.
//
// Commands (times advance by one second per command):
//
//	policy CONN/CHILD [latch] [onbreak=reset|notify] [allow=ENCR-BITS,...] [removed]
//	ike ID key=FP|anon [spi=N] [id=REMOTEID]
//	ike-rekey OLD NEW [spi=N]
//	ike-down ID REASON
//	child ID ike=N [conn=C/CH] [local=TS,...] [remote=TS,...] [encr=ALG-BITS] [mode=M] [localid=ID]
//	child-rekey OLD NEW [child options, default the old child's]
//	child-down ID REASON
//	flow PROTO LOCAL REMOTE [cookie=N]   listen PROTO LOCAL [cookie=N]
//	gone PROTO LOCAL REMOTE [cookie=N]   gone-listen PROTO LOCAL [cookie=N]
//	create-conn PROTO LOCAL REMOTE [cookie=N] [peer=key:FP] [conn=C/CH] [encr=...] [onbreak=...]
//	create-listener PROTO LOCAL [cookie=N] [peer=key:FP] [conn=C/CH] [encr=...]
//	release ID   admin-close ID REASON
//	snapshot [sas] [flows]   (input lines: ike, child, flow and listen commands)
//	restart   (Marshal, then Restore into a new machine)
//	latches   inquire ID
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			runScenario(t, file)
		})
	}
}

type directive struct {
	pre      []string // comments and blank lines before the directive
	line     int
	cmd      string
	input    []string
	expected []string
}

func parseScript(t *testing.T, file string) (ds []directive, tail []string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	var pre []string
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			pre = append(pre, l)
			continue
		}
		d := directive{pre: pre, line: i + 1, cmd: l}
		pre = nil
		for i++; i < len(lines) && lines[i] != "----"; i++ {
			d.input = append(d.input, lines[i])
		}
		if i == len(lines) {
			t.Fatalf("%s:%d: no ---- after %q", file, d.line, l)
		}
		for i++; i < len(lines) && lines[i] != ""; i++ {
			d.expected = append(d.expected, lines[i])
		}
		ds = append(ds, d)
	}
	return ds, pre
}

func runScenario(t *testing.T, file string) {
	ds, tail := parseScript(t, file)
	h := &harness{m: New(), now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), children: map[uint64]Child{}}
	var out strings.Builder
	for i := range ds {
		d := &ds[i]
		got := h.run(t, d)
		if *rewrite {
			d.expected = got
		} else if diff := cmp.Diff(d.expected, got); diff != "" {
			t.Errorf("%s:%d: %s (-want +got):\n%s", file, d.line, d.cmd, diff)
		}
		if err := h.m.check(); err != nil {
			t.Fatalf("%s:%d: %s: invariant: %v", file, d.line, d.cmd, err)
		}
	}
	if !*rewrite {
		return
	}
	for _, d := range ds {
		for _, l := range d.pre {
			out.WriteString(l + "\n")
		}
		out.WriteString(d.cmd + "\n")
		for _, l := range d.input {
			out.WriteString(l + "\n")
		}
		out.WriteString("----\n")
		for _, l := range d.expected {
			out.WriteString(l + "\n")
		}
		out.WriteString("\n")
	}
	for _, l := range tail {
		out.WriteString(l + "\n")
	}
	if err := os.WriteFile(file, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

type harness struct {
	m        *Machine
	now      time.Time
	children map[uint64]Child // as last given, for child-rekey defaults
}

func (h *harness) run(t *testing.T, d *directive) []string {
	h.now = h.now.Add(time.Second)
	f := strings.Fields(d.cmd)
	var lines []string
	var err error
	switch f[0] {
	case "latches":
		for _, li := range h.m.Latches() {
			lines = append(lines, fmtInfoLine(li))
		}
		if len(lines) == 0 {
			lines = []string{"no latches"}
		}
		return lines
	case "inquire":
		li, err := h.m.Inquire(LatchID(atoi(t, f[1])))
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		return fmtInfo(li)
	case "restart":
		data, err := h.m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if len(h.m.Ready()) != 0 {
			t.Fatal("restart with actions not drained")
		}
		h.m, err = Restore(data)
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		return []string{fmt.Sprintf("restored %d latches", h.m.Len())}
	case "snapshot":
		s := Snapshot{At: h.now, SAs: slices.Contains(f, "sas"), Flows: slices.Contains(f, "flows")}
		for _, l := range d.input {
			switch ev := h.event(t, strings.Fields(l)).(type) {
			case IKEUp:
				s.IKEs = append(s.IKEs, ev.IKE)
			case ChildUp:
				s.Children = append(s.Children, ev.Child)
			case FlowSeen:
				s.Sockets = append(s.Sockets, ev.Flow)
			default:
				t.Fatalf("line %d: %q in a snapshot", d.line, l)
			}
		}
		err = h.m.Step(s)
	case "create-conn", "create-listener":
		opts := options(f)
		var w Want
		if p, ok := opts["peer"]; ok {
			fp, _ := strings.CutPrefix(p, "key:")
			w.Peer = &Peer{Kind: KeyPeer, Fingerprint: fp}
		}
		if _, ok := opts["conn"]; ok {
			p := h.protection(opts, Protection{})
			w.Protection = &p
		}
		w.OnBreak = disposition(opts["onbreak"])
		cookie := uint64(atoi(t, orDefault(opts["cookie"], "0")))
		var id LatchID
		if f[0] == "create-conn" {
			id, err = h.m.CreateConnection(h.now, tuple(t, f[1:4]), cookie, w)
		} else {
			tu := tuple(t, f[1:3])
			id, err = h.m.CreateListener(h.now, Endpoint{tu.Proto, tu.Local}, cookie, w)
		}
		if err == nil {
			lines = append(lines, fmt.Sprintf("latch %d", id))
		}
	case "release":
		err = h.m.Release(h.now, LatchID(atoi(t, f[1])))
	case "admin-close":
		err = h.m.AdminClose(h.now, LatchID(atoi(t, f[1])), strings.Join(f[2:], " "))
	default:
		err = h.m.Step(h.event(t, f))
	}
	if err != nil {
		lines = append(lines, "error: "+err.Error())
	}
	for _, a := range h.m.Ready() {
		lines = append(lines, fmtAction(a))
	}
	if len(lines) == 0 {
		lines = []string{"ok"}
	}
	return lines
}

// event parses the commands that are events.
func (h *harness) event(t *testing.T, f []string) Event {
	opts := options(f)
	switch f[0] {
	case "policy":
		conn, child, _ := strings.Cut(f[1], "/")
		p := Policy{Conn: conn, Child: child, Latch: slices.Contains(f, "latch"), Removed: slices.Contains(f, "removed"),
			OnBreak: disposition(opts["onbreak"])}
		if a, ok := opts["allow"]; ok {
			p.Protections = []Protection{}
			for _, e := range strings.Split(a, ",") {
				p.Protections = append(p.Protections, h.protection(map[string]string{"conn": f[1], "encr": e}, Protection{}))
			}
		}
		return PolicyChanged{At: h.now, Policy: p}
	case "ike":
		return IKEUp{At: h.now, IKE: ike(t, f, opts)}
	case "ike-rekey":
		nw := ike(t, []string{"ike", f[2]}, opts)
		return IKERekeyed{At: h.now, Old: uint64(atoi(t, f[1])), New: nw}
	case "ike-down":
		return IKEDown{At: h.now, ID: uint64(atoi(t, f[1])), Reason: strings.Join(f[2:], " ")}
	case "child":
		c := h.child(t, uint64(atoi(t, f[1])), opts, Child{})
		return ChildUp{At: h.now, Child: c}
	case "child-rekey":
		old := uint64(atoi(t, f[1]))
		c := h.child(t, uint64(atoi(t, f[2])), opts, h.children[old])
		if _, ok := opts["ike"]; !ok {
			c.IKEID = 0
		}
		return ChildRekeyed{At: h.now, Old: old, New: c}
	case "child-down":
		return ChildDown{At: h.now, ID: uint64(atoi(t, f[1])), Reason: strings.Join(f[2:], " ")}
	case "flow":
		return FlowSeen{At: h.now, Flow: Flow{Tuple: tuple(t, f[1:4]), Cookie: uint64(atoi(t, orDefault(opts["cookie"], "0")))}}
	case "listen":
		return FlowSeen{At: h.now, Flow: Flow{Tuple: tuple(t, f[1:3]), Cookie: uint64(atoi(t, orDefault(opts["cookie"], "0"))), Listening: true}}
	case "gone":
		return FlowGone{At: h.now, Flow: Flow{Tuple: tuple(t, f[1:4]), Cookie: uint64(atoi(t, orDefault(opts["cookie"], "0")))}}
	case "gone-listen":
		return FlowGone{At: h.now, Flow: Flow{Tuple: tuple(t, f[1:3]), Cookie: uint64(atoi(t, orDefault(opts["cookie"], "0"))), Listening: true}}
	}
	t.Fatalf("unknown command %q", strings.Join(f, " "))
	return nil
}

func ike(t *testing.T, f []string, opts map[string]string) IKE {
	i := IKE{ID: uint64(atoi(t, f[1])), RemoteID: opts["id"]}
	spi := uint64(atoi(t, orDefault(opts["spi"], f[1])))
	i.InitiatorSPI, i.ResponderSPI = spi, spi+1000
	if fp, ok := opts["key"]; ok {
		i.Auth = Auth{Kind: KeyPeer, Fingerprint: fp}
	} else {
		i.Auth = Auth{Kind: AnonymousPeer}
	}
	return i
}

// protection builds a Protection from options, on top of base (or the
// default: ESP in tunnel mode with AES_GCM_16-128 and CURVE_25519).
func (h *harness) protection(opts map[string]string, base Protection) Protection {
	p := base
	if p.Protocol == "" {
		p = Protection{Protocol: "ESP", Mode: "TUNNEL", Encr: "AES_GCM_16", EncrKeySize: 128, DHGroup: "CURVE_25519", LocalID: "me"}
		p.Conn, p.Child = "web", "ssh"
	}
	if c, ok := opts["conn"]; ok {
		p.Conn, p.Child, _ = strings.Cut(c, "/")
	}
	if e, ok := opts["encr"]; ok {
		alg, bits, _ := strings.Cut(e, "-")
		p.Encr = alg
		p.EncrKeySize, _ = strconv.Atoi(bits)
	}
	if v, ok := opts["mode"]; ok {
		p.Mode = v
	}
	if v, ok := opts["localid"]; ok {
		p.LocalID = v
	}
	return p
}

func (h *harness) child(t *testing.T, id uint64, opts map[string]string, base Child) Child {
	c := base
	c.ID = id
	if v, ok := opts["ike"]; ok {
		c.IKEID = uint64(atoi(t, v))
	}
	c.Protection = h.protection(opts, base.Protection)
	sels := func(key, def string, cur []Selector) []Selector {
		v, ok := opts[key]
		if !ok && cur != nil {
			return cur
		}
		var out []Selector
		for _, s := range strings.Split(orDefault(v, def), ",") {
			sel, err := ParseSelector(s)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, sel)
		}
		return out
	}
	c.LocalTS = sels("local", "10.0.0.1/32", base.LocalTS)
	c.RemoteTS = sels("remote", "10.0.0.2/32", base.RemoteTS)
	h.children[id] = c
	return c
}

func options(f []string) map[string]string {
	opts := map[string]string{}
	for _, a := range f {
		if k, v, ok := strings.Cut(a, "="); ok {
			opts[k] = v
		}
	}
	return opts
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func disposition(s string) Disposition {
	switch s {
	case "reset":
		return DispositionReset
	case "notify":
		return DispositionNotify
	}
	return DispositionDefault
}

func atoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("bad number %q", s)
	}
	return n
}

func tuple(t *testing.T, f []string) Tuple {
	p, err := parseProto(f[0])
	if err != nil {
		t.Fatal(err)
	}
	tu := Tuple{Proto: p, Local: netip.MustParseAddrPort(f[1])}
	if len(f) > 2 && !strings.Contains(f[2], "=") {
		tu.Remote = netip.MustParseAddrPort(f[2])
	}
	return tu
}

func fmtAction(a Action) string {
	switch a := a.(type) {
	case Alert:
		s := fmt.Sprintf("alert %d: %v -> %v: %s [%v]", a.LatchID, a.From, a.To, a.Reason, a.Tuple)
		if a.Listener != 0 {
			s += fmt.Sprintf(" (listener %d)", a.Listener)
		}
		return s
	case Reset:
		return fmt.Sprintf("reset %d: %v cookie=%d", a.LatchID, a.Tuple, a.Cookie)
	case Persist:
		return "persist"
	}
	return fmt.Sprintf("%#v", a)
}

func fmtInfoLine(li LatchInfo) string {
	s := fmt.Sprintf("%d %v [%v] cookie=%d %v", li.ID, li.State, li.Tuple, li.Cookie, li.Origin)
	if li.Peer.Kind != 0 {
		s += " peer=" + li.Peer.String()
	}
	if li.Protection.Conn != "" {
		s += fmt.Sprintf(" prot=%s/%s", li.Protection.Conn, li.Protection.Child)
	}
	return s + fmt.Sprintf(" sas=%v conflicts=%v", li.SAs, li.Conflicts)
}

func fmtInfo(li LatchInfo) []string {
	return []string{
		fmt.Sprintf("id: %d", li.ID),
		fmt.Sprintf("state: %v", li.State),
		fmt.Sprintf("tuple: %v", li.Tuple),
		fmt.Sprintf("cookie: %d", li.Cookie),
		fmt.Sprintf("origin: %v", li.Origin),
		fmt.Sprintf("listener: %d", li.Listener),
		fmt.Sprintf("peer: %v", li.Peer),
		fmt.Sprintf("peer id: %s", li.PeerID),
		fmt.Sprintf("protection: %v", li.Protection),
		fmt.Sprintf("qop indeterminate: %v", li.QoPIndeterminate),
		fmt.Sprintf("disposition: %v", li.Disposition),
		fmt.Sprintf("sas: %v", li.SAs),
		fmt.Sprintf("conflicts: %v", li.Conflicts),
		fmt.Sprintf("lost: %v", li.Lost),
		fmt.Sprintf("policy broken: %v", li.PolicyBroken),
		fmt.Sprintf("created: %s", li.Created.Format(time.TimeOnly)),
		fmt.Sprintf("changed: %s", fmtTime(li.Changed)),
		fmt.Sprintf("reason: %s", li.Reason),
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.TimeOnly)
}
