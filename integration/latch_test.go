package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btnsd/btnsd/api"
	"github.com/btnsd/btnsd/btnsauth"
	"github.com/btnsd/btnsd/integration/lab"
	"github.com/btnsd/btnsd/vici"
)

// The tests of this file follow the connection latching draft
// (draft-ietf-btns-connection-latching-11, RFC 5660): each names the
// sections it checks.

const appPort = "5001"

// latchPolicy is btnsPolicy with the child's latching settings.
func latchPolicy(l *lab.Lab, target, btns, onBreak string) string {
	p := btnsPolicy(l, "lan", target, btns)
	return strings.Replace(p, "        dpd_action = clear\n", "        dpd_action = clear\n        btns {\n          on_break = "+onBreak+"\n        }\n", 1)
}

func (n *node) latches() []api.Latch {
	n.t.Helper()
	ls, err := n.api.Latches(context.Background())
	if err != nil {
		n.t.Fatalf("%s: latches: %v", n.Name, err)
	}
	return ls
}

// waitLatch waits up to d for a latch of n on the flow with the remote
// address remote (host:port, or just the host) that satisfies cond, and
// returns it with the time it took.
func (n *node) waitLatch(d time.Duration, what string, match func(api.Latch) bool) (api.Latch, time.Duration) {
	n.t.Helper()
	var got api.Latch
	took := n.eventually(d, what, func() bool {
		for _, l := range n.latches() {
			if match(l) {
				got = l
				return true
			}
		}
		return false
	})
	return got, took
}

func flowTo(local string) func(api.Latch) bool {
	return func(l api.Latch) bool { return l.Proto == "tcp" && l.Remote != "" && l.Local == local }
}

func flowFrom(remoteHost string) func(api.Latch) bool {
	return func(l api.Latch) bool { return l.Proto == "tcp" && strings.HasPrefix(l.Remote, remoteHost+":") }
}

func state(s string, m func(api.Latch) bool) func(api.Latch) bool {
	return func(l api.Latch) bool { return l.State == s && m(l) }
}

// setup brings up a (server) and b (client) with trusted keys, a BTNS SA
// initiated by b, and a TCP flow from b to a's test server.
type latchSetup struct {
	l            *lab.Lab
	a, b         *node
	server       *app
	client       *app
	aAddr, bAddr string
}

func newLatchSetup(t testing.TB, hosts []string, aBtns, onBreak string, anonymous bool) *latchSetup {
	t.Helper()
	l := lab.Start(t, lab.Options{Hosts: hosts})
	a0, b0 := l.Host("a"), l.Host("b")
	s := &latchSetup{l: l, aAddr: a0.Addr4.String(), bAddr: b0.Addr4.String()}
	s.a = startNode(t, a0, map[string]string{"lan.conf": latchPolicy(l, s.bAddr, aBtns, onBreak)})
	bBtns := ""
	if anonymous {
		bBtns = "peers = none\n      anonymous = yes"
	}
	s.b = startNode(t, b0, map[string]string{"lan.conf": latchPolicy(l, s.aAddr, bBtns, onBreak)})
	if anonymous {
		if err := s.b.vc.Initiate(context.Background(), vici.InitiateOpts{IKE: btnsauth.ConnName("lan", ""), Child: "host", Timeout: 10 * time.Second}); err != nil {
			t.Fatalf("b -> a anonymous: %v", err)
		}
	} else {
		s.a.trust(s.b)
		s.b.trust(s.a)
		s.b.waitConnLoaded(btnsauth.ConnName("lan", s.a.hostFP()))
		s.a.waitConnLoaded(btnsauth.ConnName("lan", s.b.hostFP()))
		if err := s.b.initiate("lan", s.a); err != nil {
			t.Fatalf("b -> a: %v", err)
		}
	}
	s.server = startApp(t, a0, "server", s.aAddr+":"+appPort)
	s.server.waitLine(5*time.Second, "listening")
	s.client = startApp(t, b0, "client", s.aAddr+":"+appPort)
	s.client.waitLine(5*time.Second, "connected")
	return s
}

// TestLatchEstablishedSurvivesRekeys: a TCP flow over a BTNS SA is latched
// automatically at both ends (RFC 5660 2: latching is recommended for all
// flows), ESTABLISHED (2.2), with the peer's key and the quality of
// protection (2.1); child and IKE rekeys with equal parameters leave it
// alone (2.2: rekeying does not change the latched parameters).
func TestLatchEstablishedSurvivesRekeys(t *testing.T) {
	s := newLatchSetup(t, []string{"a", "b"}, "", "reset", false)
	la, _ := s.a.waitLatch(3*time.Second, "a's latch ESTABLISHED", state("ESTABLISHED", flowFrom(s.bAddr)))
	lb, _ := s.b.waitLatch(3*time.Second, "b's latch ESTABLISHED", state("ESTABLISHED", flowTo(s.bAddr+":"+strings.Split(la.Remote, ":")[1])))
	if la.Peer.Kind != "key" || la.Peer.Fingerprint != s.b.status().HostKey.Fingerprint {
		t.Errorf("a's latch peer = %+v, want b's key %s", la.Peer, s.b.status().HostKey.Fingerprint)
	}
	if lb.Peer.Fingerprint != s.a.status().HostKey.Fingerprint {
		t.Errorf("b's latch peer = %+v, want a's key", lb.Peer)
	}
	p := la.Protection
	if p.Protocol != "ESP" || p.Encr != "AES_GCM_16" || p.EncrKeySize != 128 || p.Child != "host" || !strings.HasPrefix(p.Conn, "btns.lan.") {
		t.Errorf("a's latched protection = %+v", p)
	}
	if la.Disposition != "reset" || (la.Origin != "policy" && la.Origin != "listener") {
		t.Errorf("a's latch: disposition %q origin %q", la.Disposition, la.Origin)
	}
	full, err := s.a.api.Latch(context.Background(), la.ID)
	if err != nil || !strings.Contains(full.Peer.PublicKey, "BEGIN PUBLIC KEY") {
		t.Errorf("inquire: %v, peer key %q", err, full.Peer.PublicKey)
	}

	ctx := context.Background()
	sa := s.b.established()[0]
	if err := s.b.vc.Rekey(ctx, vici.RekeyOpts{ChildID: sa.Children[0].UniqueID}); err != nil {
		t.Fatal(err)
	}
	s.b.eventually(5*time.Second, "the child rekeyed", func() bool {
		for _, ike := range s.b.sas() {
			for _, c := range ike.Children {
				if c.UniqueID != sa.Children[0].UniqueID && c.State == "INSTALLED" {
					return true
				}
			}
		}
		return false
	})
	if err := s.b.vc.Rekey(ctx, vici.RekeyOpts{IKEID: sa.UniqueID}); err != nil {
		t.Fatal(err)
	}
	s.b.eventually(5*time.Second, "the IKE SA rekeyed", func() bool {
		sas := s.b.sas()
		return len(sas) == 1 && sas[0].UniqueID != sa.UniqueID && sas[0].State == "ESTABLISHED"
	})
	time.Sleep(300 * time.Millisecond) // let btnsd see the events
	for _, n := range []*node{s.a, s.b} {
		for _, l := range n.latches() {
			if l.Remote != "" && l.State != "ESTABLISHED" {
				t.Errorf("%s: latch %d is %s after rekeys: %s", n.Name, l.ID, l.State, l.Reason)
			}
		}
	}
	if s.client.hasLine("error") || s.server.hasLine("error") {
		t.Errorf("the application saw an error across rekeys:\n%s\n%s", s.client.proc.Tail(3), s.server.proc.Tail(3))
	}
}

// TestLatchBrokenByImpostor: c takes b's address and brings up an SA with a
// that covers the latched flow. The SA has another peer, which conflicts
// with the latch (RFC 5660 2.3), so it goes BROKEN (2.2) within 1 s; with
// the disposition reset the flow is torn down (5.5 (b)) and the
// application sees an error, with notify only the alert is raised (5.5 (a)).
func TestLatchBrokenByImpostor(t *testing.T) {
	for _, tc := range []struct {
		name      string
		onBreak   string
		anonymous bool // c comes as an anonymous peer instead of with its own trusted key
	}{
		{"trusted key, reset", "reset", false},
		{"anonymous, reset", "reset", true},
		{"trusted key, notify", "notify", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			aBtns := ""
			if tc.anonymous {
				aBtns = "anonymous = yes"
			}
			s := newLatchSetup(t, []string{"a", "b", "c"}, aBtns, tc.onBreak, false)
			c0 := s.l.Host("c")
			cBtns := ""
			if tc.anonymous {
				cBtns = "peers = none\n      anonymous = yes"
			}
			c := startNode(t, c0, map[string]string{"lan.conf": latchPolicy(s.l, s.aAddr, cBtns, tc.onBreak)})
			if !tc.anonymous {
				s.a.trust(c) // c is a peer a trusts: an insider, not the peer of this flow
				c.trust(s.a)
				c.waitConnLoaded(btnsauth.ConnName("lan", s.a.hostFP()))
				s.a.waitConnLoaded(btnsauth.ConnName("lan", c.hostFP()))
			}
			latched, _ := s.a.waitLatch(3*time.Second, "a's latch ESTABLISHED", state("ESTABLISHED", flowFrom(s.bAddr)))
			alerts := followAlerts(t, s.a)

			ctx := context.Background()
			if err := c0.TakeAddress(ctx, s.l.Host("b")); err != nil {
				t.Fatal(err)
			}
			var err error
			if tc.anonymous {
				err = c.vc.Initiate(ctx, vici.InitiateOpts{IKE: btnsauth.ConnName("lan", ""), Child: "host", Timeout: 10 * time.Second})
			} else {
				err = c.initiate("lan", s.a)
			}
			if err != nil {
				t.Fatalf("c (as %s) -> a: %v", s.bAddr, err)
			}
			up := time.Now()
			// With reset, the latch goes through BROKEN to CLOSED as fast as
			// the kernel frees the socket: watch the alerts, not the list.
			a := alerts.wait(t, 2*time.Second, func(a api.Alert) bool { return a.Latch == uint64(latched.ID) && a.To == "BROKEN" })
			took := a.At.Sub(up)
			if took > time.Second {
				t.Errorf("latch BROKEN %v after c's SA came up, want within 1 s", took)
			}
			t.Logf("SA up to latch BROKEN: %v (%s)", took, a.Reason)
			if a.From != "ESTABLISHED" || !strings.Contains(a.Reason, "conflicting child SA") {
				t.Errorf("alert %+v", a)
			}
			switch tc.onBreak {
			case "reset":
				l := s.server.waitLine(2*time.Second, "error")
				t.Logf("reset %v after the SA came up; the server saw: %s", time.Since(up), l)
			case "notify":
				time.Sleep(500 * time.Millisecond)
				if s.server.hasLine("error") {
					t.Errorf("notify disposition, but the flow was torn down: %s", s.server.proc.Tail(3))
				}
				l, _ := s.a.waitLatch(time.Second, "latch still there", func(l api.Latch) bool { return l.ID == latched.ID })
				if l.State != "BROKEN" || len(l.Conflicts) == 0 {
					t.Errorf("latch %d is %s with conflicts %v, want BROKEN naming c's SA", l.ID, l.State, l.Conflicts)
				}
			}
		})
	}
}

// alertLog follows a node's alert stream.
type alertLog struct {
	ch chan api.Alert
}

func followAlerts(t testing.TB, n *node) *alertLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	al := &alertLog{ch: make(chan api.Alert, 1024)}
	started := make(chan struct{})
	go func() {
		close(started)
		n.api.Alerts(ctx, func(a api.Alert) error {
			al.ch <- a
			return nil
		})
	}()
	<-started
	time.Sleep(100 * time.Millisecond) // let the subscription reach btnsd
	return al
}

func (al *alertLog) wait(t testing.TB, d time.Duration, match func(api.Alert) bool) api.Alert {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case a := <-al.ch:
			if match(a) {
				return a
			}
		case <-timeout:
			t.Fatalf("no matching alert within %v", d)
		}
	}
}

// TestLatchAnonymousReauthentication: an anonymous peer is its IKE SA
// lineage (RFC 5387 5.8, DESIGN.md): a reauthentication makes a new IKE SA
// that is no rekey of the old, so it is another peer, and the latch breaks
// (RFC 5660 2.3).
func TestLatchAnonymousReauthentication(t *testing.T) {
	s := newLatchSetup(t, []string{"a", "b"}, "peers = none\n      anonymous = yes", "notify", true)
	latched, _ := s.a.waitLatch(3*time.Second, "a's latch ESTABLISHED", state("ESTABLISHED", flowFrom(s.bAddr)))
	if latched.Peer.Kind != "anonymous" {
		t.Fatalf("latch peer %+v, want anonymous", latched.Peer)
	}
	if _, err := s.a.api.ChannelBinding(context.Background(), latched.ID); err == nil || !strings.Contains(err.Error(), "anonymous") {
		t.Errorf("channel binding of an anonymous peer: %v, want a clear refusal", err)
	}
	sa := s.b.established()[0]
	if err := s.b.vc.Rekey(context.Background(), vici.RekeyOpts{IKEID: sa.UniqueID, Reauth: true}); err != nil {
		t.Fatal(err)
	}
	broken, took := s.a.waitLatch(10*time.Second, "a's latch BROKEN", func(l api.Latch) bool { return l.ID == latched.ID && l.State == "BROKEN" })
	t.Logf("reauthentication to BROKEN: %v (%s)", took, broken.Reason)
}

// TestLatchBrokenByDPD: b's charon dies; a's DPD concludes the peer is
// dead and deletes the SAs, the latch loses every congruent SA and breaks
// (RFC 5660 2.3), and its flow is reset (5.5 (b)).
func TestLatchBrokenByDPD(t *testing.T) {
	s := newLatchSetup(t, []string{"a", "b"}, "", "reset", false)
	latched, _ := s.a.waitLatch(3*time.Second, "a's latch ESTABLISHED", state("ESTABLISHED", flowFrom(s.bAddr)))
	alerts := followAlerts(t, s.a)
	killed := time.Now()
	s.l.Host("b").KillCharon()
	// The reset closes the socket at once, so the latch goes through
	// BROKEN to CLOSED: watch the alerts, not the list.
	a := alerts.wait(t, 20*time.Second, func(a api.Alert) bool { return a.Latch == uint64(latched.ID) && a.To == "BROKEN" })
	t.Logf("charon killed to BROKEN: %v (%s)", time.Since(killed), a.Reason)
	s.server.waitLine(2*time.Second, "error")
}

// TestLatchesSurviveBtnsdRestart: the LD is persisted; a restarted btnsd
// restores each latch whose flow and congruent SA still exist (RFC 5660 2:
// restartable key managers), and breaks one whose SA changed while it was
// down.
func TestLatchesSurviveBtnsdRestart(t *testing.T) {
	s := newLatchSetup(t, []string{"a", "b", "c"}, "", "reset", false)
	latched, _ := s.a.waitLatch(3*time.Second, "a's latch ESTABLISHED", state("ESTABLISHED", flowFrom(s.bAddr)))

	s.a.btnsd.Stop()
	s.a.start()
	l, _ := s.a.waitLatch(3*time.Second, "the latch back", func(l api.Latch) bool { return l.ID == latched.ID })
	if l.State != "ESTABLISHED" || l.Remote != latched.Remote || l.Peer.Fingerprint != latched.Peer.Fingerprint {
		t.Fatalf("after a restart the latch is %+v, want it ESTABLISHED as before", l)
	}

	// While btnsd is down, c takes b's address and brings up an SA.
	c0 := s.l.Host("c")
	c := startNode(t, c0, map[string]string{"lan.conf": latchPolicy(s.l, s.aAddr, "", "reset")})
	s.a.trust(c)
	c.trust(s.a)
	c.waitConnLoaded(btnsauth.ConnName("lan", s.a.hostFP()))
	s.a.waitConnLoaded(btnsauth.ConnName("lan", c.hostFP()))
	aConn := btnsauth.ConnName("lan", s.a.hostFP())
	s.a.btnsd.Stop()
	if err := c0.TakeAddress(context.Background(), s.l.Host("b")); err != nil {
		t.Fatal(err)
	}
	if err := c.vc.Initiate(context.Background(), vici.InitiateOpts{IKE: aConn, Child: "host", Timeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	s.a.start()
	// The latch broke at start and its flow was reset, so it is gone or
	// BROKEN; the server saw the reset.
	s.server.waitLine(3*time.Second, "error")
	for _, l := range s.a.latches() {
		if l.ID == latched.ID && l.State == "ESTABLISHED" {
			t.Fatalf("latch %d still ESTABLISHED after a conflicting SA came up while btnsd was down", l.ID)
		}
	}
}

// TestListenerLatch: a server listening on a port a BTNS child covers gets
// a LISTENER latch (RFC 5660 2.2), and the connections it accepts get
// connection latches born from it.
func TestListenerLatch(t *testing.T) {
	s := newLatchSetup(t, []string{"a", "b"}, "", "reset", false)
	listener, _ := s.a.waitLatch(3*time.Second, "a LISTENER latch", func(l api.Latch) bool {
		return l.State == "LISTENER" && l.Local == s.aAddr+":"+appPort
	})
	conn, _ := s.a.waitLatch(3*time.Second, "the accepted flow's latch", state("ESTABLISHED", flowFrom(s.bAddr)))
	if conn.Origin != "listener" && conn.Origin != "policy" {
		t.Errorf("accepted flow's latch origin %q", conn.Origin)
	}
	t.Logf("listener latch %d, connection latch %d (origin %s, listener %d)", listener.ID, conn.ID, conn.Origin, conn.Listener)
	found, err := s.a.api.FindLatch(context.Background(), "tcp", s.aAddr+":"+appPort, "")
	if err != nil || found.ID != listener.ID {
		t.Errorf("find listener latch: %+v, %v", found, err)
	}
	ids := []uint64{}
	for _, l := range s.a.latches() {
		ids = append(ids, l.ID)
	}
	if !slices.Contains(ids, listener.ID) {
		t.Errorf("latch list %v lacks the listener", ids)
	}
}

// TestLatchBrokenByCharonRestart: a restarted charon has lost every SA;
// btnsd resynchronises from list-sas and the latches whose SAs are gone
// break (RFC 5660 2: the key manager's state is gone, so are the SAs the
// latch was bound to) and their flows are reset.
func TestLatchBrokenByCharonRestart(t *testing.T) {
	s := newLatchSetup(t, []string{"a", "b"}, "", "reset", false)
	latched, _ := s.a.waitLatch(3*time.Second, "a's latch ESTABLISHED", state("ESTABLISHED", flowFrom(s.bAddr)))
	alerts := followAlerts(t, s.a)
	a0 := s.l.Host("a")
	a0.KillCharon()
	if err := a0.StartCharon(); err != nil {
		t.Fatal(err)
	}
	a := alerts.wait(t, 10*time.Second, func(a api.Alert) bool { return a.Latch == uint64(latched.ID) && a.To == "BROKEN" })
	t.Logf("after charon's restart: %s", a.Reason)
	s.server.waitLine(2*time.Second, "error")
}

// TestLatchIPv6AndUDPAdminClose: flows over an IPv6 BTNS SA are latched
// too, TCP and UDP (RFC 5660 2: connection latching applies to any
// flow); an administrative close (RFC 5660 2.3, btnsctl latch close)
// resets the TCP flow and aborts the connected UDP socket, IPv6 included.
func TestLatchIPv6AndUDPAdminClose(t *testing.T) {
	l := lab.Start(t, lab.Options{Hosts: []string{"a", "b"}})
	a0, b0 := l.Host("a"), l.Host("b")
	a6, b6 := a0.Addr6.String(), b0.Addr6.String()
	a := startNode(t, a0, map[string]string{"lan.conf": latchPolicy(l, b6, "", "reset")})
	b := startNode(t, b0, map[string]string{"lan.conf": latchPolicy(l, a6, "", "reset")})
	a.trust(b)
	b.trust(a)
	b.waitConnLoaded(btnsauth.ConnName("lan", a.hostFP()))
	a.waitConnLoaded(btnsauth.ConnName("lan", b.hostFP()))
	if err := b.initiate("lan", a); err != nil {
		t.Fatalf("b -> a over IPv6: %v", err)
	}
	if sa := b.established(); len(sa) != 1 || sa[0].RemoteHost != a0.Addr6 {
		t.Fatalf("b's SAs: %+v, want one with a's IPv6 address", sa)
	}

	tcpServer := startApp(t, a0, "server", "["+a6+"]:"+appPort)
	tcpServer.waitLine(5*time.Second, "listening")
	udpServer := startApp(t, a0, "udpserver", "["+a6+"]:5002")
	udpServer.waitLine(5*time.Second, "listening")
	tcpClient := startApp(t, b0, "client", "["+a6+"]:"+appPort)
	tcpClient.waitLine(5*time.Second, "connected")
	udpClient := startApp(t, b0, "udpclient", "["+a6+"]:5002")
	udpClient.waitLine(5*time.Second, "connected")

	remote := func(proto string) func(api.Latch) bool {
		return func(l api.Latch) bool {
			return l.State == "ESTABLISHED" && l.Proto == proto && strings.HasPrefix(l.Remote, "["+a6+"]:")
		}
	}
	tcpLatch, _ := b.waitLatch(3*time.Second, "b's IPv6 TCP latch", remote("tcp"))
	udpLatch, _ := b.waitLatch(3*time.Second, "b's IPv6 UDP latch", remote("udp"))
	if tcpLatch.Peer.Fingerprint != a.status().HostKey.Fingerprint || udpLatch.Peer.Fingerprint != a.status().HostKey.Fingerprint {
		t.Errorf("IPv6 latches' peers: tcp %s udp %s, want a's key", tcpLatch.Peer.Fingerprint, udpLatch.Peer.Fingerprint)
	}
	if _, err := a.api.FindLatch(context.Background(), "udp", "["+a6+"]:5002", ""); err != nil {
		t.Errorf("a's UDP server has no LISTENER latch: %v", err)
	}

	for _, c := range []struct {
		latch api.Latch
		app   *app
	}{{tcpLatch, tcpClient}, {udpLatch, udpClient}} {
		out := b.mustCtl("latch", "close", fmt.Sprint(c.latch.ID), "--reason", "test: administrative close")
		if !strings.Contains(out, "closed") {
			t.Errorf("btnsctl latch close: %q", out)
		}
		// SOCK_DESTROY aborts a TCP socket (ECONNABORTED); a connected UDP
		// socket gets ECONNABORTED on a pending read and is disconnected,
		// so the next send fails with EDESTADDRREQ: either way the
		// application learns that its flow is gone.
		line := c.app.waitLine(3*time.Second, "error")
		if !strings.Contains(line, "connection abort") && !(c.latch.Proto == "udp" && strings.Contains(line, "destination address required")) {
			t.Errorf("%s client after the administrative close: %q, want the socket aborted", c.latch.Proto, line)
		}
	}
}
