package latchmon

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btnsd/btnsd/latchmon/latch"
	"github.com/btnsd/btnsd/latchmon/sockets"
	"github.com/btnsd/btnsd/vici"
)

var flowA = latch.Tuple{Proto: latch.ProtoTCP, Local: netip.MustParseAddrPort("10.99.0.1:5001"), Remote: netip.MustParseAddrPort("10.99.0.2:40000")}

// latchAlice sets up the common start: alice's IKE SA 1 with child SA 1
// covering 10.99.0.1 <-> 10.99.0.2, and the TCP flow flowA (cookie 0x2a)
// latched to it. RFC 5660 2: latches are created automatically for the
// flows a latching policy protects; 2.3 ALERT for the birth.
func latchAlice(t *testing.T, w *world) {
	t.Helper()
	w.socks.add(tcpSock(0x2a, "10.99.0.1:5001", "10.99.0.2:40000"))
	w.up(ikeSA(alice, 1, "10.99.0.2", childSA("web", 1, "10.99.0.1/32", "10.99.0.2/32")))
	w.expect(1, latch.None, latch.Established, "latched to child SA 1")
}

func TestLatchesFlowOfLatchingSA(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.start(worldOpts{})
	latchAlice(t, w)

	li := w.inquire(1)
	if li.Tuple != flowA || li.Cookie != 0x2a || li.Origin != latch.OriginPolicy || li.Disposition != latch.DispositionReset {
		t.Errorf("latch: %+v", li)
	}
	// RFC 5660 2: the peer identity of a trusted-key peer is its key.
	if want := (latch.Peer{Kind: latch.KeyPeer, Fingerprint: fpString(fpAlice)}); li.Peer != want {
		t.Errorf("peer %v, want %v", li.Peer, want)
	}
	if li.PeerID != "a5:01:10:39:"+alice {
		t.Errorf("peer id %q", li.PeerID)
	}
	// 2, 2.1: type, mode and quality of protection, local identity; the
	// DH group of a child SA made with its IKE SA is the IKE SA's.
	want := latch.Protection{Conn: alice, Child: "web", Protocol: "ESP", Mode: "TUNNEL", Encap: true,
		Encr: "AES_GCM_16", EncrKeySize: 128, DHGroup: "CURVE_25519", LocalID: "86:64:cd:37"}
	if li.Protection != want {
		t.Errorf("protection %+v, want %+v", li.Protection, want)
	}
	if id, ok := w.m.Find(flowA); !ok || id != 1 {
		t.Errorf("Find = %d, %v", id, ok)
	}
	if !w.log.has("latch 1 tcp 10.99.0.1:5001 <-> 10.99.0.2:40000: NONE -> ESTABLISHED: latched to child SA 1") {
		t.Error("no log line for the birth")
	}
}

// RFC 5660 2.2, 2.3.2 (host C impersonates B): an SA with another peer that
// covers the latched flow breaks the latch, and with the recommended
// disposition for TCP (5.5 (b)) the connection is reset: the socket is
// destroyed by cookie, and its close ends the latch.
func TestAttackerSABreaksAndResets(t *testing.T) {
	for _, tc := range []struct {
		name string
		sa   vici.IKESA
	}{
		{"other trusted key", ikeSA(bob, 2, "10.99.0.2", childSA("web", 2, "10.99.0.1/32", "10.99.0.2/32"))},
		// 2.3: any SA that conflicts breaks the latch, whatever
		// connection it came from: one btnsd does not own included.
		{"foreign connection", ikeSA("mallory", 2, "10.99.0.2", childSA("any", 2, "10.99.0.0/24", "10.99.0.0/24"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, worldOpts{})
			w.start(worldOpts{})
			latchAlice(t, w)
			w.up(tc.sa)
			a := w.expect(1, latch.Established, latch.Broken, "conflicting child SA 2")
			if a.Tuple != flowA {
				t.Errorf("alert tuple %v", a.Tuple)
			}
			// The destroyed socket's close notification ends the latch.
			w.expect(1, latch.Broken, latch.Closed, "socket closed")
			if got := w.socks.destroyedCookies(); !slices.Equal(got, []uint64{0x2a}) {
				t.Errorf("destroyed %v, want [0x2a]", got)
			}
			waitFor(t, "the reset's log line", func() bool {
				return w.log.has("latch 1 tcp 10.99.0.1:5001 <-> 10.99.0.2:40000: reset: socket cookie 0x2a destroyed")
			})
			if !w.log.has("latch 1 tcp 10.99.0.1:5001 <-> 10.99.0.2:40000: ESTABLISHED -> BROKEN: conflicting child SA 2") {
				t.Error("no log line for the break")
			}
			if _, err := w.m.Inquire(1); err == nil {
				t.Error("a closed latch is still in the LD")
			}
		})
	}
}

// RFC 5660 5.5 (a), 2.2: with disposition notify the break only alerts, and
// the latch comes back to ESTABLISHED once the conflict is cleared.
func TestNotifyAlertsAndMends(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.start(worldOpts{conns: webConns("notify")})
	latchAlice(t, w)
	w.up(ikeSA(bob, 2, "10.99.0.2", childSA("web", 2, "10.99.0.1/32", "10.99.0.2/32")))
	// bob's SA comes from bob's connection: another peer, and another
	// protection since the latched one names alice's connection.
	w.expect(1, latch.Established, latch.Broken, "conflicting child SA 2 ("+bob+"/web): other peer and protection")
	w.down(2, "DELETING")
	w.expect(1, latch.Broken, latch.Established, "conflict cleared")
	if got := w.socks.destroyedCookies(); len(got) != 0 {
		t.Errorf("notify destroyed %v", got)
	}
}

// RFC 5660 2: "it is desirable that IPsec channels survive the expiration
// of IKE_SAs and child SAs": rekeys with equal parameters change nothing,
// including a PFS rekey that lists the DH group the first child SA did not.
func TestRekeysKeepLatch(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.start(worldOpts{})
	latchAlice(t, w)

	// charon lists the new state before it sends the events.
	old := w.sas[0]
	nw := ikeSA(alice, 3, "10.99.0.2", old.Children...)
	w.sas = []vici.IKESA{nw}
	w.setSAs()
	w.ch.Emit(vici.IKERekey{Time: time.Now(), Old: old, New: ikeSA(alice, 3, "10.99.0.2")})
	c := childSA("web", 4, "10.99.0.1/32", "10.99.0.2/32")
	c.DHGroup = "CURVE_25519"
	nw.Children = []vici.ChildSA{c}
	w.sas = []vici.IKESA{nw}
	w.setSAs()
	w.ch.Emit(vici.ChildRekey{Time: time.Now(), IKE: ikeSA(alice, 3, "10.99.0.2"), Old: old.Children[0], New: c})
	waitFor(t, "child SA 4 bound to the latch", func() bool {
		return slices.Equal(w.inquire(1).SAs, []uint64{4})
	})
	w.quiet()
	if li := w.inquire(1); li.State != latch.Established {
		t.Errorf("state %v", li.State)
	}
	// A resync that finds the same SAs changes nothing either.
	w.ch.Emit(vici.Resync{Time: time.Now(), Reason: vici.ReasonDropped})
	w.quiet()
}

// RFC 5387 5.8, DESIGN.md: an anonymous peer is its IKE SA lineage. An IKE
// rekey continues it; a reauthentication (a new IKE SA, then the old one
// deleted) is another peer, whose SA conflicts: the latch breaks.
func TestAnonymousPeerLineage(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.start(worldOpts{})
	w.socks.add(tcpSock(0x2a, "10.99.0.1:5001", "10.99.0.2:40000"))
	sa := ikeSA(anon, 1, "10.99.0.2", childSA("web", 1, "10.99.0.1/32", "10.99.0.2/32"))
	sa.RemoteID = "@btns-anonymous"
	w.up(sa)
	w.expect(1, latch.None, latch.Established, "latched")
	if p := w.inquire(1).Peer; p.Kind != latch.AnonymousPeer {
		t.Fatalf("peer %v", p)
	}

	nw := ikeSA(anon, 2, "10.99.0.2", sa.Children...)
	nw.RemoteID = sa.RemoteID
	w.sas = []vici.IKESA{nw}
	w.setSAs()
	nw.Children = nil
	w.ch.Emit(vici.IKERekey{Time: time.Now(), Old: sa, New: nw})
	w.quiet()

	// Reauthentication, make-before-break: up of IKE SA 3, down of 2.
	re := ikeSA(anon, 3, "10.99.0.2", childSA("web", 3, "10.99.0.1/32", "10.99.0.2/32"))
	re.RemoteID = sa.RemoteID
	w.up(re)
	w.expect(1, latch.Established, latch.Broken, "other peer (anonymous lineage")
}

// RFC 5660 2: DPD concluding that the peer is dead breaks its latches;
// charon's down events then come while the IKE SA is still ESTABLISHED.
func TestDeadPeerBreaks(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.start(worldOpts{conns: webConns("notify")})
	latchAlice(t, w)
	w.down(1, "ESTABLISHED")
	w.expect(1, latch.Established, latch.Broken, "dpd")
}

// DESIGN.md, Restarts: a charon restart loses every SA; the Resync that
// follows finds none, and the latches break with their disposition.
func TestResyncWithoutSAsBreaks(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.start(worldOpts{})
	latchAlice(t, w)
	w.ch.Restart()
	w.sas = nil
	w.expect(1, latch.Established, latch.Broken, "gone at resync")
	w.expect(1, latch.Broken, latch.Closed, "socket closed")
	if got := w.socks.destroyedCookies(); !slices.Equal(got, []uint64{0x2a}) {
		t.Errorf("destroyed %v", got)
	}
}

// RFC 5660 2.2: a latch ends with its flow. The kernel may report a freed
// socket with local port 0: the monitor matches it by cookie.
func TestSocketCloseEndsLatch(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.start(worldOpts{})
	latchAlice(t, w)
	w.socks.close(0x2a)
	w.expect(1, latch.Established, latch.Closed, "socket closed")
}

// A socket that goes to TIME-WAIT keeps its cookie but is no flow: the
// next dump ends its latch even if the close notification was lost; new
// TIME-WAIT and SYN-RECV sockets are not latched.
func TestDumpSkipsDeadSockets(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.start(worldOpts{})
	latchAlice(t, w)
	w.socks.setState(0x2a, sockets.StateTimeWait, 0)
	w.expect(1, latch.Established, latch.Closed, "socket closed")

	tw := tcpSock(0x30, "10.99.0.1:5002", "10.99.0.2:40001")
	tw.State, tw.Inode = sockets.StateTimeWait, 0
	w.socks.add(tw)
	rq := tcpSock(0x31, "10.99.0.1:5003", "10.99.0.2:40002")
	rq.State, rq.Inode = sockets.StateSynRecv, 0
	w.socks.add(rq)
	w.quiet()
	if n := len(w.m.Latches()); n != 0 {
		t.Errorf("%d latches", n)
	}
	// Once accepted, the connection is a socket of its own: latched.
	w.socks.add(tcpSock(0x32, "10.99.0.1:5003", "10.99.0.2:40002"))
	w.expect(2, latch.None, latch.Established, "latched")
}

// RFC 5660 2.3 CREATE_CONNECTION_LATCH, for a flow whose SA does not latch
// by itself: the socket's cookie is looked up in a fresh dump. Then
// RELEASE_LATCH leaves the socket alone, and an administrative close of
// another latch resets its socket.
func TestAPI(t *testing.T) {
	w := newWorld(t, worldOpts{})
	conns := webConns("")
	conns[0].Children[0].Latch = false
	w.start(worldOpts{conns: conns})
	w.up(ikeSA(alice, 1, "10.99.0.2", childSA("web", 1, "10.99.0.1/32", "10.99.0.2/32")))
	w.socks.add(tcpSock(0x2a, "10.99.0.1:5001", "10.99.0.2:40000"))
	w.socks.add(tcpSock(0x2b, "10.99.0.1:5002", "10.99.0.2:40000"))
	w.quiet()

	ctx := context.Background()
	id, err := w.m.CreateConnection(ctx, flowA, 0, latch.Want{})
	if err != nil {
		t.Fatal(err)
	}
	w.expect(id, latch.None, latch.Established, "latched to child SA 1")
	if li := w.inquire(id); li.Cookie != 0x2a || li.Origin != latch.OriginAPI {
		t.Errorf("latch %+v", li)
	}
	if _, err := w.m.CreateConnection(ctx, flowA, 0, latch.Want{}); err == nil {
		t.Error("a second latch on the same flow")
	}
	if err := w.m.Release(id); err != nil {
		t.Fatal(err)
	}
	w.expect(id, latch.Established, latch.Closed, "released")

	flowB := flowA
	flowB.Local = netip.MustParseAddrPort("10.99.0.1:5002")
	id2, err := w.m.CreateConnection(ctx, flowB, 0x2b, latch.Want{})
	if err != nil {
		t.Fatal(err)
	}
	w.expect(id2, latch.None, latch.Established, "latched")
	if err := w.m.AdminClose(id2, "test"); err != nil {
		t.Fatal(err)
	}
	w.expect(id2, latch.Established, latch.Closed, "closed by the administrator: test")
	if got := w.socks.destroyedCookies(); !slices.Equal(got, []uint64{0x2b}) {
		t.Errorf("destroyed %v", got)
	}
	w.quiet()
	if n := len(w.m.Latches()); n != 0 {
		t.Errorf("%d latches left", n)
	}
}

// A listening socket on an endpoint a latching SA covers gets a LISTENER
// latch, and the connections accepted on it name it (RFC 5660 2.3).
func TestListener(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.start(worldOpts{})
	w.socks.add(sockets.Socket{Proto: sockets.TCP, Local: netip.MustParseAddrPort("0.0.0.0:5001"), State: sockets.StateListen, Cookie: 0x10, Inode: 1, Listening: true})
	w.up(ikeSA(alice, 1, "10.99.0.2", childSA("web", 1, "10.99.0.1/32[tcp/5001]", "10.99.0.2/32")))
	w.expect(1, latch.None, latch.Listener, "listening")
	w.socks.add(tcpSock(0x2a, "10.99.0.1:5001", "10.99.0.2:40000"))
	a := w.expect(2, latch.None, latch.Established, "")
	if a.Listener != 1 {
		t.Errorf("alert names listener %d", a.Listener)
	}
	waitFor(t, "the log line naming the listener", func() bool { return w.log.has("(from listener latch 1)") })
}

// charon's own IKE sockets (UDP 500, 4500) get no LISTENER latch even under
// a child that covers every protocol: IKE bypasses IPsec (RFC 4301), no SA
// ever protects them. Another UDP socket there does get one.
func TestIKESocketsNotLatched(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.start(worldOpts{})
	for i, port := range []string{"500", "4500", "5353"} {
		w.socks.add(sockets.Socket{Proto: sockets.UDP, Local: netip.MustParseAddrPort("0.0.0.0:" + port), State: 7, Cookie: uint64(0x20 + i), Inode: 1, Listening: true})
	}
	w.up(ikeSA(alice, 1, "10.99.0.2", childSA("web", 1, "10.99.0.1/32", "10.99.0.2/32")))
	a := w.expect(1, latch.None, latch.Listener, "listening")
	if a.Tuple.Local.Port() != 5353 {
		t.Errorf("LISTENER latch on %v, want the UDP socket on 5353", a.Tuple)
	}
	w.quiet()
	if n := len(w.m.Latches()); n != 1 {
		t.Errorf("%d latches, want 1: %+v", n, w.m.Latches())
	}
}

// RFC 5660 2.2: a policy change that drops the child breaks its latches.
func TestConnRemovedBreaks(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.start(worldOpts{conns: webConns("notify")})
	latchAlice(t, w)
	w.m.SetConns(webConns("notify")[1:])
	w.expect(1, latch.Established, latch.Broken, "policy "+alice+"/web removed")
	w.m.SetConns(webConns("notify"))
	w.expect(1, latch.Broken, latch.Established, "allows the latched protection again")
	// The same set again changes nothing.
	w.m.SetConns(webConns("notify"))
	w.quiet()
}

// RFC 5660 2.3: the holder is informed of every transition. A subscriber
// gets every alert in order; one that does not read is dropped, its
// channel closed, and never holds the monitor up.
func TestSubscribers(t *testing.T) {
	w := newWorld(t, worldOpts{subBuf: 2})
	good, cancel := w.m.Subscribe()
	defer cancel()
	stuck, cancelStuck := w.m.Subscribe()
	w.start(worldOpts{})
	w.up(ikeSA(alice, 1, "10.99.0.2", childSA("web", 1, "10.99.0.1/32", "10.99.0.2/32")))

	var got []latch.LatchID
	done := make(chan struct{})
	go func() {
		defer close(done)
		for a := range good {
			got = append(got, a.LatchID)
			if len(got) == 5 {
				return
			}
		}
	}()
	for i := range 5 {
		w.socks.add(tcpSock(uint64(0x40+i), netip.AddrPortFrom(netip.MustParseAddr("10.99.0.1"), uint16(6000+i)).String(), "10.99.0.2:40000"))
		w.syncSockets()
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("the reading subscriber got %v", got)
	}
	if !slices.Equal(got, []latch.LatchID{1, 2, 3, 4, 5}) {
		t.Errorf("subscriber got %v", got)
	}
	var n int
	for range stuck {
		n++
	}
	if n != 2 {
		t.Errorf("the stuck subscriber got %d alerts before being dropped, want 2", n)
	}
	cancelStuck() // after the drop: harmless
	if !w.log.has("alert subscriber dropped") {
		t.Error("the drop is not logged")
	}
}

// HandleSAEvent never blocks: past the queue's size events are dropped and
// the monitor resynchronises from list-sas, where it finds the SA.
func TestSAQueueOverflowResyncs(t *testing.T) {
	w := newWorld(t, worldOpts{})
	for i := range saQueueSize + 10 {
		w.m.HandleSAEvent(vici.IKEUpDown{Time: time.Now(), IKE: vici.IKESA{Name: "x", UniqueID: uint64(1000 + i)}})
	}
	w.socks.add(tcpSock(0x2a, "10.99.0.1:5001", "10.99.0.2:40000"))
	w.sas = []vici.IKESA{ikeSA(alice, 1, "10.99.0.2", childSA("web", 1, "10.99.0.1/32", "10.99.0.2/32"))}
	w.setSAs()
	w.start(worldOpts{})
	w.expect(1, latch.None, latch.Established, "latched")
	if !w.log.has("SA events came faster than the monitor took them") {
		t.Error("overflow not logged")
	}
}

// Before the daemon's first SetConns the monitor takes no SA: it could
// not name their peers.
func TestWaitsForConns(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.start(worldOpts{noConns: true})
	w.socks.add(tcpSock(0x2a, "10.99.0.1:5001", "10.99.0.2:40000"))
	w.up(ikeSA(alice, 1, "10.99.0.2", childSA("web", 1, "10.99.0.1/32", "10.99.0.2/32")))
	w.quiet()
	if n := w.ch.Stats()["list-sas"]; n != 0 {
		t.Errorf("%d list-sas before SetConns", n)
	}
	w.m.SetConns(webConns("reset"))
	w.expect(1, latch.None, latch.Established, "latched")
	if p := w.inquire(1).Peer; p.Fingerprint != fpString(fpAlice) {
		t.Errorf("peer %v", p)
	}
}

func TestRunTwice(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.start(worldOpts{})
	w.syncSockets() // Run is running
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := w.m.Run(ctx); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run: %v", err)
	}
}
