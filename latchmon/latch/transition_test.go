package latch

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// cmpAddrs lets cmp compare the netip types, which have unexported fields.
var cmpAddrs = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{}, netip.Prefix{})

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// tOp is the time of the operation under test in TestTransitions.
var tOp = t0.Add(time.Hour)

const (
	fpAlice   = "SHA256:alice"
	fpMallory = "SHA256:mallory"
)

var (
	tcpFlow  = Tuple{ProtoTCP, netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.0.0.2:22")}
	accepted = Tuple{ProtoTCP, netip.MustParseAddrPort("10.0.0.1:22"), netip.MustParseAddrPort("10.0.0.2:50000")}
	otherTCP = Tuple{ProtoTCP, netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.0.0.9:22")}
	listenEP = Endpoint{ProtoTCP, netip.MustParseAddrPort("0.0.0.0:22")}
)

func prot(conn, child string) Protection {
	return Protection{Conn: conn, Child: child, Protocol: "ESP", Mode: "TUNNEL", Encr: "AES_GCM_16", EncrKeySize: 128,
		DHGroup: "CURVE_25519", LocalID: "me"}
}

func hostChild(ike, id uint64, p Protection) Child {
	return Child{IKEID: ike, ID: id, Protection: p,
		LocalTS: []Selector{MustParseSelector("10.0.0.1/32")}, RemoteTS: []Selector{MustParseSelector("10.0.0.2/32")}}
}

func keyIKE(id uint64, fp string) IKE {
	return IKE{ID: id, InitiatorSPI: id, ResponderSPI: id + 1000, Auth: Auth{Kind: KeyPeer, Fingerprint: fp}}
}

// Setups. Each starts from policies web/ssh (latch, reset) and web/udp
// (latch, notify) and alice's IKE SA 1 with child SA 1 of the given child
// config over 10.0.0.1 <-> 10.0.0.2.
func sa(child string) []Event {
	return []Event{
		PolicyChanged{Policy: Policy{Conn: "web", Child: "ssh", Latch: true, OnBreak: DispositionReset}},
		PolicyChanged{Policy: Policy{Conn: "web", Child: "notify", Latch: true, OnBreak: DispositionNotify}},
		IKEUp{IKE: keyIKE(1, fpAlice)},
		ChildUp{Child: hostChild(1, 1, prot("web", child))},
	}
}

func established(child string) []Event {
	return append(sa(child), FlowSeen{Flow: Flow{Tuple: tcpFlow, Cookie: 7}})
}

func listening() []Event {
	return append(sa("ssh"), FlowSeen{Flow: Flow{Tuple: listenEP.Tuple(), Cookie: 1, Listening: true}})
}

// attacker is mallory's IKE SA 2 with child SA 2 over the same addresses.
func attacker(child string) []Event {
	return []Event{IKEUp{IKE: keyIKE(2, fpMallory)}, ChildUp{Child: hostChild(2, 2, prot("web", child))}}
}

func cat(evs ...[]Event) []Event {
	var out []Event
	for _, e := range evs {
		out = append(out, e...)
	}
	return out
}

// TestTransitions has one row per transition of RFC 5660 2.2, from a state
// reached by setup, through one event or API call, to the state of latch
// id and the actions drained with Ready.
func TestTransitions(t *testing.T) {
	alert := func(id LatchID, tu Tuple, from, to State, reason string) Alert {
		return Alert{LatchID: id, Tuple: tu, From: from, To: to, Reason: reason, At: tOp}
	}
	reset := func(id LatchID, tu Tuple, cookie uint64) Reset { return Reset{LatchID: id, Tuple: tu, Cookie: cookie} }
	cbc := prot("web", "ssh")
	cbc.Encr, cbc.EncrKeySize = "AES_CBC", 256

	tests := []struct {
		name  string
		spec  string // the RFC 5660 section the row checks
		from  State
		setup []Event
		op    any // an Event, or a func(*Machine) error for the API
		id    LatchID
		want  State
		acts  []Action
	}{
		{
			name: "flow covered by a latching SA is born ESTABLISHED",
			spec: "2, 5.1", from: None, setup: sa("ssh"),
			op:   FlowSeen{Flow: Flow{Tuple: tcpFlow, Cookie: 7}},
			want: Established,
			acts: []Action{alert(1, tcpFlow, None, Established, "latched to child SA 1 (web/ssh)"), Persist{}},
		},
		{
			name: "flow covered by conflicting SAs is born BROKEN and reset",
			spec: "2.3, 5.5", from: None, setup: cat(sa("ssh"), attacker("ssh")),
			op:   FlowSeen{Flow: Flow{Tuple: tcpFlow, Cookie: 7}},
			want: Broken,
			acts: []Action{
				alert(1, tcpFlow, None, Broken, "conflicting child SA 2 (web/ssh) at creation: other peer (key SHA256:mallory)"),
				reset(1, tcpFlow, 7), Persist{},
			},
		},
		{
			name: "flow covered by no latching SA is not latched",
			spec: "2", from: None, setup: sa("ssh"),
			op:   FlowSeen{Flow: Flow{Tuple: otherTCP, Cookie: 7}},
			want: None,
		},
		{
			name: "listening socket on a covered endpoint is born LISTENER",
			spec: "2.2, 5.1", from: None, setup: sa("ssh"),
			op:   FlowSeen{Flow: Flow{Tuple: listenEP.Tuple(), Cookie: 1, Listening: true}},
			want: Listener,
			acts: []Action{alert(1, listenEP.Tuple(), None, Listener, "listening on an endpoint covered by child SA 1 (web/ssh)"), Persist{}},
		},
		{
			name: "flow accepted on a listener latch is born ESTABLISHED, naming the listener",
			spec: "2.2, 2.3", from: None, setup: listening(),
			op: FlowSeen{Flow: Flow{Tuple: accepted, Cookie: 2}},
			id: 2, want: Established,
			acts: []Action{
				Alert{LatchID: 2, Listener: 1, Tuple: accepted, From: None, To: Established, Reason: "latched to child SA 1 (web/ssh)", At: tOp},
				Persist{},
			},
		},
		{
			name: "API latch on a covered flow is born ESTABLISHED",
			spec: "2.3 CREATE_CONNECTION_LATCH", from: None, setup: sa("ssh"),
			op: func(m *Machine) error {
				_, err := m.CreateConnection(tOp, tcpFlow, 7, Want{})
				return err
			},
			want: Established,
			acts: []Action{alert(1, tcpFlow, None, Established, "latched to child SA 1 (web/ssh)"), Persist{}},
		},
		{
			name: "LISTENER goes to CLOSED when the socket closes",
			spec: "2.2", from: Listener, setup: listening(),
			op:   FlowGone{Flow: Flow{Tuple: listenEP.Tuple(), Cookie: 1, Listening: true}},
			want: Closed,
			acts: []Action{alert(1, listenEP.Tuple(), Listener, Closed, "socket closed"), Persist{}},
		},
		{
			name: "LISTENER goes to CLOSED and its socket is reset on admin close",
			spec: "2.2, 2.3", from: Listener, setup: listening(),
			op:   func(m *Machine) error { return m.AdminClose(tOp, 1, "maintenance") },
			want: Closed,
			acts: []Action{
				alert(1, listenEP.Tuple(), Listener, Closed, "closed by the administrator: maintenance"),
				reset(1, listenEP.Tuple(), 1), Persist{},
			},
		},
		{
			name: "LISTENER does not break: only CLOSED follows it",
			spec: "2.2", from: Listener, setup: cat(listening(), attacker("ssh")[:1]),
			op:   attacker("ssh")[1],
			want: Listener,
		},
		{
			name: "ESTABLISHED breaks on an SA of another peer, and TCP is reset",
			spec: "2.2, 2.3, 5.5", from: Established, setup: cat(established("ssh"), attacker("ssh")[:1]),
			op:   attacker("ssh")[1],
			want: Broken,
			acts: []Action{
				alert(1, tcpFlow, Established, Broken, "conflicting child SA 2 (web/ssh): other peer (key SHA256:mallory)"),
				reset(1, tcpFlow, 7), Persist{},
			},
		},
		{
			name: "ESTABLISHED breaks on an SA of the same peer with other algorithms",
			spec: "2.1, 2.2", from: Established, setup: established("ssh"),
			op:   ChildUp{Child: hostChild(1, 2, cbc)},
			want: Broken,
			acts: []Action{
				alert(1, tcpFlow, Established, Broken, "conflicting child SA 2 (web/ssh): other protection (web/ssh ESP TUNNEL AES_CBC-256 CURVE_25519 local me)"),
				reset(1, tcpFlow, 7), Persist{},
			},
		},
		{
			name: "ESTABLISHED breaks without reset under a notify disposition",
			spec: "5.5", from: Established, setup: cat(established("notify"), attacker("notify")[:1]),
			op:   attacker("notify")[1],
			want: Broken,
			acts: []Action{alert(1, tcpFlow, Established, Broken, "conflicting child SA 2 (web/notify): other peer (key SHA256:mallory)"), Persist{}},
		},
		{
			name: "ESTABLISHED breaks when its last congruent SA is deleted",
			spec: "2.2", from: Established, setup: established("notify"),
			op:   ChildDown{ID: 1, Reason: "deleted"},
			want: Broken,
			acts: []Action{alert(1, tcpFlow, Established, Broken, "child SA 1 down: deleted"), Persist{}},
		},
		{
			name: "ESTABLISHED breaks when DPD declares the peer dead",
			spec: "2", from: Established, setup: established("ssh"),
			op:   IKEDown{ID: 1, Reason: "dpd"},
			want: Broken,
			acts: []Action{alert(1, tcpFlow, Established, Broken, "IKE SA 1 down: dpd"), reset(1, tcpFlow, 7), Persist{}},
		},
		{
			name: "ESTABLISHED breaks when the policy no longer allows its protection",
			spec: "2.2, 2.3", from: Established, setup: established("ssh"),
			op:   PolicyChanged{Policy: Policy{Conn: "web", Child: "ssh", Latch: true, Protections: []Protection{cbc}}},
			want: Broken,
			acts: []Action{
				alert(1, tcpFlow, Established, Broken, "policy web/ssh changed: the latched protection is no longer allowed"),
				reset(1, tcpFlow, 7), Persist{},
			},
		},
		{
			name: "ESTABLISHED stays through a child rekey with equal parameters",
			spec: "2", from: Established, setup: established("ssh"),
			op:   ChildRekeyed{Old: 1, New: hostChild(0, 2, prot("web", "ssh"))},
			want: Established,
		},
		{
			name: "ESTABLISHED breaks on a child rekey to other algorithms",
			spec: "2, 2.1", from: Established, setup: established("ssh"),
			op:   ChildRekeyed{Old: 1, New: hostChild(0, 2, cbc)},
			want: Broken,
			acts: []Action{
				alert(1, tcpFlow, Established, Broken, "conflicting child SA 2 (web/ssh): other protection (web/ssh ESP TUNNEL AES_CBC-256 CURVE_25519 local me)"),
				reset(1, tcpFlow, 7), Persist{},
			},
		},
		{
			name: "ESTABLISHED stays through an IKE rekey",
			spec: "2; RFC 5387 5.8", from: Established, setup: established("ssh"),
			op:   IKERekeyed{Old: 1, New: keyIKE(3, fpAlice)},
			want: Established,
		},
		{
			name: "ESTABLISHED stays when a second congruent SA comes",
			spec: "2", from: Established, setup: established("ssh"),
			op:   ChildUp{Child: hostChild(1, 2, prot("web", "ssh"))},
			want: Established,
		},
		{
			name: "ESTABLISHED goes to CLOSED when its socket closes",
			spec: "2.2, 5.1", from: Established, setup: established("ssh"),
			op:   FlowGone{Flow: Flow{Tuple: tcpFlow, Cookie: 7}},
			want: Closed,
			acts: []Action{alert(1, tcpFlow, Established, Closed, "socket closed"), Persist{}},
		},
		{
			name: "ESTABLISHED ignores the end of an older socket on its 5-tuple",
			spec: "5.1", from: Established, setup: established("ssh"),
			op:   FlowGone{Flow: Flow{Tuple: tcpFlow, Cookie: 6}},
			want: Established,
		},
		{
			name: "ESTABLISHED goes to CLOSED when its socket is replaced",
			spec: "2.2, 5.1", from: Established, setup: established("ssh"),
			op:   FlowSeen{Flow: Flow{Tuple: tcpFlow, Cookie: 8}},
			want: Closed,
			acts: []Action{
				alert(1, tcpFlow, Established, Closed, "socket replaced by another with the same 5-tuple"),
				alert(2, tcpFlow, None, Established, "latched to child SA 1 (web/ssh)"),
				Persist{},
			},
		},
		{
			name: "ESTABLISHED goes to CLOSED on RELEASE_LATCH, without reset",
			spec: "2.3 RELEASE_LATCH", from: Established, setup: established("ssh"),
			op:   func(m *Machine) error { return m.Release(tOp, 1) },
			want: Closed,
			acts: []Action{alert(1, tcpFlow, Established, Closed, "released"), Persist{}},
		},
		{
			name: "ESTABLISHED goes to CLOSED on admin close, and is reset",
			spec: "2.2, 2.3", from: Established, setup: established("ssh"),
			op:   func(m *Machine) error { return m.AdminClose(tOp, 1, "maintenance") },
			want: Closed,
			acts: []Action{
				alert(1, tcpFlow, Established, Closed, "closed by the administrator: maintenance"),
				reset(1, tcpFlow, 7), Persist{},
			},
		},
		{
			name: "BROKEN mends when the conflicting SA goes",
			spec: "2.2", from: Broken, setup: cat(established("notify"), attacker("notify")),
			op:   ChildDown{ID: 2, Reason: "deleted"},
			want: Established,
			acts: []Action{alert(1, tcpFlow, Broken, Established, "conflict cleared: child SA 2 down: deleted"), Persist{}},
		},
		{
			name: "BROKEN mends when a congruent SA comes back",
			spec: "2.2", from: Broken, setup: append(established("notify"), IKEDown{ID: 1, Reason: "dpd"}, IKEUp{IKE: keyIKE(3, fpAlice)}),
			op:   ChildUp{Child: hostChild(3, 4, prot("web", "notify"))},
			want: Established,
			acts: []Action{alert(1, tcpFlow, Broken, Established, "congruent child SA 4 (web/notify) up"), Persist{}},
		},
		{
			name: "BROKEN mends when the policy allows its protection again",
			spec: "2.2", from: Broken,
			setup: append(established("notify"),
				PolicyChanged{Policy: Policy{Conn: "web", Child: "notify", Latch: true, OnBreak: DispositionNotify, Protections: []Protection{cbc}}}),
			op:   PolicyChanged{Policy: Policy{Conn: "web", Child: "notify", Latch: true, OnBreak: DispositionNotify}},
			want: Established,
			acts: []Action{alert(1, tcpFlow, Broken, Established, "policy web/notify allows the latched protection again"), Persist{}},
		},
		{
			name: "BROKEN stays while another conflict remains",
			spec: "2.2", from: Broken,
			setup: cat(established("notify"), attacker("notify"), []Event{ChildUp{Child: hostChild(2, 3, prot("web", "notify"))}}),
			op:    ChildDown{ID: 2, Reason: "deleted"},
			want:  Broken,
		},
		{
			name: "BROKEN does not mend once its socket was reset",
			spec: "5.5 (b)", from: Broken, setup: cat(established("ssh"), attacker("ssh")),
			op:   ChildDown{ID: 2, Reason: "deleted"},
			want: Broken,
		},
		{
			name: "BROKEN goes to CLOSED when its socket closes",
			spec: "2.2", from: Broken, setup: cat(established("ssh"), attacker("ssh")),
			op:   FlowGone{Flow: Flow{Tuple: tcpFlow, Cookie: 7}},
			want: Closed,
			acts: []Action{alert(1, tcpFlow, Broken, Closed, "socket closed"), Persist{}},
		},
		{
			name: "BROKEN goes to CLOSED on admin close, and is reset",
			spec: "2.2, 2.3", from: Broken, setup: cat(established("notify"), attacker("notify")),
			op:   func(m *Machine) error { return m.AdminClose(tOp, 1, "operator") },
			want: Closed,
			acts: []Action{
				alert(1, tcpFlow, Broken, Closed, "closed by the administrator: operator"),
				reset(1, tcpFlow, 7), Persist{},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Logf("RFC 5660 %s", tt.spec)
			m := New()
			for i, ev := range tt.setup {
				if err := m.Step(withTime(ev, t0.Add(time.Duration(i)*time.Second))); err != nil {
					t.Fatalf("setup %d %T: %v", i, ev, err)
				}
			}
			id := tt.id
			if id == 0 {
				id = 1
			}
			if got := stateOf(m, id); got != tt.from {
				t.Fatalf("setup left latch %d in %v, want %v", id, got, tt.from)
			}
			m.Ready()
			var err error
			switch op := tt.op.(type) {
			case Event:
				err = m.Step(withTime(op, tOp))
			case func(*Machine) error:
				err = op(m)
			}
			if err != nil {
				t.Fatalf("op: %v", err)
			}
			if got := stateOf(m, id); got != tt.want && !(tt.want == Closed && got == None) {
				t.Errorf("latch %d in %v, want %v", id, got, tt.want)
			}
			if diff := cmp.Diff(tt.acts, m.Ready(), cmpAddrs); diff != "" {
				t.Errorf("actions (-want +got):\n%s", diff)
			}
			if tt.want == Closed {
				if _, err := m.Inquire(id); !errors.Is(err, ErrNotFound) {
					t.Errorf("closed latch %d still in the LD: %v", id, err)
				}
			}
			if err := m.check(); err != nil {
				t.Errorf("invariant: %v", err)
			}
		})
	}
}

func stateOf(m *Machine, id LatchID) State {
	li, err := m.Inquire(id)
	if err != nil {
		return None
	}
	return li.State
}

// withTime returns ev with its time set to at.
func withTime(ev Event, at time.Time) Event {
	switch e := ev.(type) {
	case IKEUp:
		e.At = at
		return e
	case IKERekeyed:
		e.At = at
		return e
	case IKEDown:
		e.At = at
		return e
	case ChildUp:
		e.At = at
		return e
	case ChildRekeyed:
		e.At = at
		return e
	case ChildDown:
		e.At = at
		return e
	case FlowSeen:
		e.At = at
		return e
	case FlowGone:
		e.At = at
		return e
	case PolicyChanged:
		e.At = at
		return e
	case Snapshot:
		e.At = at
		return e
	}
	panic("unknown event")
}
