package latch

import (
	"errors"
	"strings"
	"testing"
)

// bypass is a kernel SPD entry outside charon that bypasses IPsec for
// 10.0.0.1 <-> 10.0.0.2, as the driver reports it.
func bypass(id uint64) []Event {
	c := hostChild(99, id, Protection{Conn: "xfrm", Child: "SPD: bypass policy added outside charon", Protocol: "none"})
	c.Interference = true
	return []Event{IKEUp{IKE: keyIKE(99, "kernel")}, ChildUp{Child: c}}
}

func stepAll(t *testing.T, m *Machine, evs []Event) []Alert {
	t.Helper()
	for _, ev := range evs {
		if err := m.Step(ev); err != nil {
			t.Fatalf("%T: %v", ev, err)
		}
	}
	var out []Alert
	for _, a := range m.Ready() {
		if a, ok := a.(Alert); ok {
			out = append(out, a)
		}
	}
	return out
}

// RFC 5660 2.3: SPD changes that would bypass a latched connection's
// protection break its latch (REQUIRED); the latch mends (notify, 5.5 (a))
// when the change is undone (2.2).
func TestInterferenceBreaksAndMends(t *testing.T) {
	m := New()
	stepAll(t, m, established("notify"))
	as := stepAll(t, m, bypass(50))
	if len(as) != 1 || as[0].To != Broken || as[0].Reason != "conflicting SPD: bypass policy added outside charon: not the key manager's" {
		t.Fatalf("alerts %+v", as)
	}
	as = stepAll(t, m, []Event{ChildDown{ID: 50, Reason: "SPD: bypass policy added outside charon: gone"}})
	if len(as) != 1 || as[0].To != Established || !strings.Contains(as[0].Reason, "conflict cleared") {
		t.Fatalf("alerts %+v", as)
	}
}

// No latch is ever made from an interfering object: not automatically
// (whatever the policy of its connection name), not from a listener latch
// without parameters, not by the API; a flow it covers is born BROKEN
// (2.3: no latch over conflicting SAs) and the API refuses it.
func TestInterferenceNeverLatched(t *testing.T) {
	m := New()
	evs := cat([]Event{PolicyChanged{Policy: Policy{Conn: "xfrm", Child: "SPD: bypass policy added outside charon", Latch: true}}},
		bypass(50), []Event{FlowSeen{Flow: Flow{Tuple: tcpFlow, Cookie: 7}}})
	if as := stepAll(t, m, evs); len(as) != 0 {
		t.Fatalf("alerts %+v", as)
	}
	if _, err := m.CreateConnection(tOp, tcpFlow, 7, Want{}); !errors.Is(err, ErrNoSA) {
		t.Errorf("CreateConnection: %v, want ErrNoSA", err)
	}
	p, pr := Peer{Kind: KeyPeer, Fingerprint: fpAlice}, prot("web", "ssh")
	if _, err := m.CreateConnection(tOp, tcpFlow, 7, Want{Peer: &p, Protection: &pr}); !errors.Is(err, ErrConflict) {
		t.Errorf("CreateConnection with parameters: %v, want ErrConflict", err)
	}
	// With charon's SA too: the flow is latched to charon's SA, born BROKEN.
	as := stepAll(t, m, sa("ssh"))
	if len(as) != 1 || as[0].To != Broken || !strings.Contains(as[0].Reason, "at creation") {
		t.Fatalf("alerts %+v", as)
	}
	li, _ := m.Inquire(as[0].LatchID)
	if li.Protection.Conn != "web" || len(li.Conflicts) != 1 || li.Conflicts[0] != 50 {
		t.Errorf("latch %+v", li)
	}
}

// A listener latch without parameters does not latch a flow that only an
// interfering object covers.
func TestInterferenceListener(t *testing.T) {
	m := New()
	stepAll(t, m, cat(bypass(50), []Event{FlowSeen{Flow: Flow{Tuple: listenEP.Tuple(), Cookie: 1, Listening: true}}}))
	if _, err := m.CreateListener(tOp, listenEP, 1, Want{}); err != nil {
		t.Fatal(err)
	}
	m.Ready()
	if as := stepAll(t, m, []Event{FlowSeen{Flow: Flow{Tuple: accepted, Cookie: 8}}}); len(as) != 0 {
		t.Fatalf("alerts %+v", as)
	}
	if _, ok := m.Find(accepted); ok {
		t.Error("accepted flow latched to an interfering object")
	}
}
