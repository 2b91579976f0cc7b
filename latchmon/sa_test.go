package latchmon

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/btnsd/btnsd/latchmon/latch"
	"github.com/btnsd/btnsd/vici"
	"github.com/btnsd/btnsd/vici/vicitest"
)

func TestSelectors(t *testing.T) {
	for _, tc := range []struct {
		ts   string
		want []string
	}{
		{"10.99.0.1/32", []string{"10.99.0.1/32"}},
		{"10.0.0.0/24[tcp/80]", []string{"10.0.0.0/24[tcp/80]"}},
		{"fd00::/64[udp]", []string{"fd00::/64[udp]"}},
		{"10.0.0.1..10.0.0.6", []string{"10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"}},
		{"10.0.0.0..10.0.1.255[tcp]", []string{"10.0.0.0/23[tcp]"}},
		{"[tcp/http]", []string{"0.0.0.0/0[tcp/80]", "::/0[tcp/80]"}},
		{"dynamic", nil},
	} {
		got := selectors(mustTS(tc.ts))
		var want []latch.Selector
		for _, s := range tc.want {
			want = append(want, latch.MustParseSelector(s))
		}
		// vici's "any port" is 0-65535, which the machine takes as is.
		for i := range want {
			if want[i].FromPort == 0 && want[i].ToPort == 0 {
				want[i].ToPort = 65535
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", tc.ts, got, want)
		}
	}
	// A flow is covered as charon would match it.
	c := latch.Child{LocalTS: selectors(mustTS("10.0.0.1..10.0.0.6")), RemoteTS: selectors(mustTS("[tcp/http]"))}
	in := latch.Tuple{Proto: latch.ProtoTCP, Local: netip.MustParseAddrPort("10.0.0.5:4000"), Remote: netip.MustParseAddrPort("192.0.2.1:80")}
	out := in
	out.Local = netip.MustParseAddrPort("10.0.0.7:4000")
	if !c.Covers(in) || c.Covers(out) {
		t.Errorf("covers %v: %v, %v: %v", in, c.Covers(in), out, c.Covers(out))
	}
}

func TestDownReason(t *testing.T) {
	for _, tc := range []struct{ ike, child, want string }{
		{"DELETING", "INSTALLED", "deleted"},
		{"ESTABLISHED", "DELETING", "deleted"},
		{"DELETING", "", "deleted"},
		{"ESTABLISHED", "INSTALLED", "dpd: peer dead or restarted (destroyed without a delete exchange)"},
		{"REKEYING", "", "dpd: peer dead or restarted (destroyed without a delete exchange)"},
		{"CONNECTING", "", "down (IKE SA CONNECTING)"},
	} {
		if got := downReason(tc.ike, tc.child); got != tc.want {
			t.Errorf("downReason(%q, %q) = %q, want %q", tc.ike, tc.child, got, tc.want)
		}
	}
}

// DESIGN.md, "Peer identity": how the peer of an IKE SA is named from its
// connection.
func TestAuthFor(t *testing.T) {
	m, err := New(Config{SAs: vicitest.New()})
	if err != nil {
		t.Fatal(err)
	}
	m.SetConns(append(webConns(""), ConnInfo{Name: "btns.plain", Policy: "plain", Children: []ChildInfo{{Name: "c"}}},
		// Not btnsd's: ignored, never latched, its peers named by identity.
		ConnInfo{Name: "mallory", PeerFP: fpBob, Children: []ChildInfo{{Name: "any", Latch: true}}}))
	if _, ok := m.policies[polKey{"mallory", "any"}]; ok {
		t.Error("a foreign connection got a latching policy")
	}
	m.learnedFP["btns.old."+fpBob[:16]] = fpString(fpBob)
	key := func(fp string) latch.Auth { return latch.Auth{Kind: latch.KeyPeer, Fingerprint: fp} }
	anonymous := latch.Auth{Kind: latch.AnonymousPeer}
	for _, tc := range []struct {
		conn, remoteID string
		want           latch.Auth
	}{
		{alice, "a5:01", key(fpString(fpAlice))},
		{bob, "whatever the peer says", key(fpString(fpBob))},
		{anon, "10.99.0.2", anonymous},
		{"btns.plain", "C=CH, CN=peer", key("id:C=CH, CN=peer")},
		{"btns.plain", "%any", anonymous},
		{"mallory", "a5:01", key("id:a5:01")},
		{"mallory", "", anonymous},
		// Not told of by SetConns: a restored latch's fingerprint, the
		// name's .anon, else the identity.
		{"btns.old." + fpBob[:16], "x", key(fpString(fpBob))},
		{"btns.new.anon", "x", anonymous},
		{"btns.new." + fpAlice[:16], "a5:01", key("id:a5:01")},
	} {
		sa := vici.IKESA{Name: tc.conn, RemoteID: tc.remoteID}
		if got := m.authFor(&sa); got != tc.want {
			t.Errorf("%s (%q): %+v, want %+v", tc.conn, tc.remoteID, got, tc.want)
		}
	}
}

func TestLearnFromLatches(t *testing.T) {
	li := func(conn, fp string) latch.LatchInfo {
		return latch.LatchInfo{Peer: latch.Peer{Kind: latch.KeyPeer, Fingerprint: fp}, Protection: latch.Protection{Conn: conn}}
	}
	got := learnFromLatches([]latch.LatchInfo{
		li(alice, fpString(fpAlice)),
		li("btns.web."+fpBob[:16], fpString(fpAlice)), // the name does not match the key
		li("mallory", fpString(fpAlice)),              // not btnsd's
		li(anon, "id:x"),
	})
	if len(got) != 1 || got[alice] != fpString(fpAlice) {
		t.Errorf("learned %v", got)
	}
}

// The IKE SA's peer is fixed when the monitor first sees the SA: what
// SetConns says later applies to new IKE SAs only.
func TestIKEAuthIsStable(t *testing.T) {
	m, err := New(Config{SAs: vicitest.New()})
	if err != nil {
		t.Fatal(err)
	}
	sa := ikeSA(alice, 1, "10.99.0.2")
	before := m.ike(&sa)
	m.SetConns(webConns(""))
	if after := m.ike(&sa); after != before {
		t.Errorf("IKE SA 1 was %+v, is %+v", before, after)
	}
	sa.InitiatorSPI = "ffff" // charon restarted and reused the uniqueid
	if got := m.ike(&sa); got.Auth.Fingerprint != fpString(fpAlice) {
		t.Errorf("a new IKE SA with the same uniqueid: %+v", got)
	}
}

// The events captured from charon 5.9.8 (shared/strongswan), with the
// connection renamed to one of btnsd's: ike-updown and child-updown latch
// the flow (RFC 5660 2), and the delete that follows breaks the latch and
// resets the socket (2.2, 5.5 (b)).
func TestCapturedEvents(t *testing.T) {
	raw := vicitest.RawExamples(t)
	conn := alice
	event := func(name string) vici.Event {
		t.Helper()
		ex, ok := raw[name]
		if !ok {
			t.Fatalf("no example %q", name)
		}
		body := vici.NewMsg()
		for _, k := range ex.Message.Keys() {
			if sec := ex.Message.Section(k); sec != nil && k == "rk" {
				body.Set(conn, sec)
			} else {
				body.Set(k, ex.Message.Get(k))
			}
		}
		ev, err := vici.DecodeEvent(ex.Event, body, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	w := newWorld(t, worldOpts{})
	conns := webConns("")
	conns[0].Children[0].Name = "rk"
	w.start(worldOpts{conns: conns})
	w.socks.add(tcpSock(0x2a, "10.99.0.1:5001", "10.99.0.2:40000"))
	up := event("child-updown (up)").(vici.ChildUpDown)
	w.sas = []vici.IKESA{up.IKE}
	w.setSAs()
	w.ch.Emit(event("ike-updown (up)"))
	w.ch.Emit(up)
	w.expect(1, latch.None, latch.Established, "latched to child SA 1 ("+conn+"/rk)")
	li := w.inquire(1)
	want := latch.Protection{Conn: conn, Child: "rk", Protocol: "ESP", Mode: "TUNNEL", Encap: true,
		Encr: "AES_GCM_16", EncrKeySize: 128, DHGroup: "CURVE_25519",
		LocalID: "86:64:cd:37:19:c8:5c:55:a2:ca:db:b4:83:19:16:e3:33:c3:d0:64"}
	if li.Protection != want {
		t.Errorf("protection %+v\nwant %+v", li.Protection, want)
	}
	if li.Peer.Fingerprint != fpString(fpAlice) || li.PeerID != "a5:01:10:39:82:1c:86:98:f6:40:ab:25:fb:85:3a:a4:7a:e3:d9:bd" {
		t.Errorf("peer %v, id %q", li.Peer, li.PeerID)
	}
	w.sas = nil
	w.setSAs()
	w.ch.Emit(event("child-updown (down)"))
	w.ch.Emit(event("ike-updown (down)"))
	w.expect(1, latch.Established, latch.Broken, "child SA 1 down: deleted")
	w.expect(1, latch.Broken, latch.Closed, "socket closed")

	// The NAT-T float of IKE_SA_INIT (an "(unnamed)" SA) lists nothing.
	lists := w.ch.Stats()["list-sas"]
	w.ch.Emit(event("ike-update (IKE_SA_INIT NAT-T float)"))
	w.quiet()
	if n := w.ch.Stats()["list-sas"]; n != lists {
		t.Errorf("list-sas after an IKE_SA_INIT update")
	}
}

// MOBIKE moves a transport mode SA's selectors with no child event: the
// monitor lists the IKE SA (ike-update) and steps its children again. The
// latch of the flow on the old address loses its SA.
func TestIKEUpdateRefreshes(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.start(worldOpts{conns: webConns("notify")})
	latchAlice(t, w)
	moved := ikeSA(alice, 1, "10.99.0.9", childSA("web", 1, "10.99.0.1/32", "10.99.0.9/32"))
	w.sas = []vici.IKESA{moved}
	w.setSAs()
	bare := w.sas[0]
	bare.Children = nil
	w.ch.Emit(vici.IKEUpdate{Time: time.Now(), IKE: bare,
		LocalHost: netip.MustParseAddrPort("10.99.0.1:4500"), RemoteHost: netip.MustParseAddrPort("10.99.0.9:4500")})
	w.expect(1, latch.Established, latch.Broken, "child SA 1 replaced")
}
