package latch

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestParseSelector checks strongSwan's traffic selector notation.
func TestParseSelector(t *testing.T) {
	tests := []struct {
		in   string
		want Selector
		str  string
	}{
		{"10.0.0.1/32", Selector{Prefix: netip.MustParsePrefix("10.0.0.1/32")}, "10.0.0.1/32"},
		{"10.0.0.1", Selector{Prefix: netip.MustParsePrefix("10.0.0.1/32")}, "10.0.0.1/32"},
		{"10.0.0.7/24", Selector{Prefix: netip.MustParsePrefix("10.0.0.0/24")}, "10.0.0.0/24"},
		{"fd00::/64[udp]", Selector{Prefix: netip.MustParsePrefix("fd00::/64"), Proto: ProtoUDP}, "fd00::/64[udp]"},
		{"10.0.0.0/8[tcp/80]", Selector{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Proto: ProtoTCP, FromPort: 80, ToPort: 80}, "10.0.0.0/8[tcp/80]"},
		{"0.0.0.0/0[tcp/1024-65535]", Selector{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Proto: ProtoTCP, FromPort: 1024, ToPort: 65535}, "0.0.0.0/0[tcp/1024-65535]"},
		{"::/0[/53]", Selector{Prefix: netip.MustParsePrefix("::/0"), FromPort: 53, ToPort: 53}, "::/0[/53]"},
		{"::/0[%any/%any]", Selector{Prefix: netip.MustParsePrefix("::/0")}, "::/0"},
		{"10.0.0.1/32[132]", Selector{Prefix: netip.MustParsePrefix("10.0.0.1/32"), Proto: ProtoSCTP}, "10.0.0.1/32[sctp]"},
		{"::ffff:10.0.0.1/128", Selector{Prefix: netip.MustParsePrefix("10.0.0.1/32")}, "10.0.0.1/32"},
		{"10.0.0.1/32[tcp/OPAQUE]", Selector{Prefix: netip.MustParsePrefix("10.0.0.1/32"), Proto: ProtoTCP, FromPort: 65535}, "10.0.0.1/32[tcp/65535-0]"},
	}
	for _, tt := range tests {
		got, err := ParseSelector(tt.in)
		if err != nil {
			t.Errorf("ParseSelector(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmpAddrs); diff != "" {
			t.Errorf("ParseSelector(%q) (-want +got):\n%s", tt.in, diff)
		}
		if got.String() != tt.str {
			t.Errorf("ParseSelector(%q).String() = %q, want %q", tt.in, got.String(), tt.str)
		}
	}
	for _, bad := range []string{"", "10.0.0.1/33", "10.0.0.1/32[tcp/80", "10.0.0.1/32[bogus]", "10.0.0.1/32[tcp/x]", "10.0.0.1/32[tcp/70000]"} {
		if _, err := ParseSelector(bad); err == nil {
			t.Errorf("ParseSelector(%q) did not fail", bad)
		}
	}
}

// TestCovers checks when a child SA covers a flow and a listening
// endpoint (RFC 5660 2.2: SAs "whose traffic selectors encompass the
// 5-tuple").
func TestCovers(t *testing.T) {
	sel := MustParseSelector
	ap := netip.MustParseAddrPort
	c := Child{LocalTS: []Selector{sel("10.0.0.1/32[tcp]"), sel("fd00::1/128")}, RemoteTS: []Selector{sel("10.0.0.0/24[tcp/20-25]"), sel("fd00::/64")}}
	tests := []struct {
		t    Tuple
		want bool
	}{
		{Tuple{ProtoTCP, ap("10.0.0.1:40000"), ap("10.0.0.2:22")}, true},
		{Tuple{ProtoTCP, ap("10.0.0.1:40000"), ap("10.0.0.2:26")}, false},
		{Tuple{ProtoUDP, ap("10.0.0.1:40000"), ap("10.0.0.2:22")}, false},
		{Tuple{ProtoTCP, ap("10.0.0.3:40000"), ap("10.0.0.2:22")}, false},
		{Tuple{ProtoTCP, ap("10.0.0.1:40000"), ap("10.0.1.2:22")}, false},
		{Tuple{ProtoUDP, ap("[fd00::1]:53"), ap("[fd00::9]:53")}, true},
		{Tuple{ProtoTCP, ap("[::ffff:10.0.0.1]:40000"), ap("[::ffff:10.0.0.2]:22")}, true}, // dual-stack socket
	}
	for _, tt := range tests {
		if got := c.Covers(tt.t); got != tt.want {
			t.Errorf("Covers(%v) = %v, want %v", tt.t, got, tt.want)
		}
	}
	eps := []struct {
		e    Endpoint
		want bool
	}{
		{Endpoint{ProtoTCP, ap("10.0.0.1:22")}, true},
		{Endpoint{ProtoTCP, ap("0.0.0.0:22")}, true},
		{Endpoint{ProtoTCP, ap("[::]:22")}, true},
		{Endpoint{ProtoTCP, ap("10.0.0.9:22")}, false},
		{Endpoint{ProtoUDP, ap("0.0.0.0:22")}, false}, // fd00::1 admits UDP, but not on 0.0.0.0
		{Endpoint{ProtoUDP, ap("[::]:22")}, true},
	}
	for _, tt := range eps {
		if got := coversEndpoint(c.LocalTS, tt.e); got != tt.want {
			t.Errorf("coversEndpoint(%v) = %v, want %v", tt.e, got, tt.want)
		}
	}
}

// TestIKERekeyAfterIKEUp checks the order where the driver reported the new
// IKE SA of a rekey (and a child SA under it) before the rekey itself:
// RFC 5387 5.8, the new IKE SA must end up in the old one's lineage.
func TestIKERekeyAfterIKEUp(t *testing.T) {
	m := New()
	anon := IKE{ID: 1, InitiatorSPI: 1, Auth: Auth{Kind: AnonymousPeer}}
	steps := []Event{
		PolicyChanged{Policy: Policy{Conn: "web", Child: "ssh", Latch: true, OnBreak: DispositionNotify}},
		IKEUp{IKE: anon},
		ChildUp{Child: hostChild(1, 1, prot("web", "ssh"))},
		FlowSeen{Flow: Flow{Tuple: tcpFlow, Cookie: 7}},
		IKEUp{IKE: IKE{ID: 2, InitiatorSPI: 2, Auth: Auth{Kind: AnonymousPeer}}},
		ChildUp{Child: hostChild(2, 2, prot("web", "ssh"))},
		IKERekeyed{Old: 1, New: IKE{ID: 2, InitiatorSPI: 2}},
	}
	for i, ev := range steps {
		if err := m.Step(withTime(ev, t0)); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if err := m.check(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	li, err := m.Inquire(1)
	if err != nil {
		t.Fatal(err)
	}
	want := Peer{Kind: AnonymousPeer, Lineage: 1}
	if li.State != Established || li.Peer != want || !cmp.Equal(li.SAs, []uint64{1, 2}) {
		t.Errorf("latch after the late rekey: %v peer %v SAs %v, want ESTABLISHED, %v, [1 2]", li.State, li.Peer, li.SAs, want)
	}
}

// TestStepErrors checks the events the machine refuses.
func TestStepErrors(t *testing.T) {
	m := New()
	for _, tt := range []struct {
		ev   Event
		want error
	}{
		{ChildUp{Child: hostChild(9, 1, prot("web", "ssh"))}, ErrUnknownIKE},
		{IKEUp{IKE: IKE{ID: 1, Auth: Auth{Kind: KeyPeer}}}, ErrInvalid},
		{IKEUp{IKE: IKE{ID: 0, Auth: Auth{Kind: AnonymousPeer}}}, ErrInvalid},
		{FlowSeen{Flow: Flow{Tuple: Tuple{Proto: ProtoTCP, Remote: tcpFlow.Remote}}}, ErrInvalid},
		{IKERekeyed{Old: 5, New: IKE{ID: 6}}, ErrUnknownIKE},
		{PolicyChanged{Policy: Policy{Conn: "web"}}, ErrInvalid},
	} {
		if err := m.Step(tt.ev); !errors.Is(err, tt.want) {
			t.Errorf("Step(%T) = %v, want %v", tt.ev, err, tt.want)
		}
	}
	if len(m.Ready()) != 0 || m.Len() != 0 {
		t.Errorf("refused events changed the machine")
	}
	for _, data := range []string{"", "{}", `{"Version":2}`, `{"Version":1,"Latches":[{"ID":1,"State":1}]}`} {
		if _, err := Restore([]byte(data)); err == nil {
			t.Errorf("Restore(%q) did not fail", data)
		}
	}
}

// TestEmptySelectors checks that a child SA with a selector of no prefix
// (which matches nothing) is taken, rekeyed and removed cleanly.
func TestEmptySelectors(t *testing.T) {
	m := New()
	c := hostChild(1, 1, prot("web", "ssh"))
	c.RemoteTS = append(c.RemoteTS, Selector{})
	nw := c
	nw.ID = 2
	for i, ev := range []Event{
		PolicyChanged{Policy: Policy{Conn: "web", Child: "ssh", Latch: true}},
		IKEUp{IKE: keyIKE(1, fpAlice)},
		ChildUp{Child: c},
		FlowSeen{Flow: Flow{Tuple: tcpFlow, Cookie: 7}},
		ChildRekeyed{Old: 1, New: nw},
		ChildDown{ID: 2},
	} {
		if err := m.Step(withTime(ev, t0)); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if err := m.check(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if li, err := m.Inquire(1); err != nil || li.State != Broken {
		t.Errorf("latch 1: %+v, %v; want BROKEN", li, err)
	}
}
