package integration

import (
	"context"
	"testing"
	"time"

	"github.com/btnsd/btnsd/api"
	"github.com/btnsd/btnsd/btnsauth"
	"github.com/btnsd/btnsd/integration/lab"
)

// channelBinding returns n's channel-binding value for its latch on the
// TCP flow whose remote end is on host remote.
func (n *node) channelBinding(remote string) (api.Latch, string) {
	n.t.Helper()
	l, _ := n.waitLatch(5*time.Second, "latch on the flow with "+remote, state("ESTABLISHED", flowFrom(remote)))
	cb, err := n.api.ChannelBinding(context.Background(), l.ID)
	if err != nil {
		n.t.Fatalf("%s: channel binding of latch %d: %v", n.Name, l.ID, err)
	}
	return l, cb.Value
}

// TestChannelBindingDetectsManInTheMiddle: Channel-Bound BTNS (RFC 5387,
// RFC 5056). Both ends of a flow between a and b get the same
// channel-binding value; when m, a host both trust with its own key,
// relays between them, a and b get different values, which a higher layer
// comparing them detects, although every SA is authenticated.
func TestChannelBindingDetectsManInTheMiddle(t *testing.T) {
	l := lab.Start(t, lab.Options{Hosts: []string{"a", "b", "m"}})
	a0, b0, m0 := l.Host("a"), l.Host("b"), l.Host("m")
	aAddr, bAddr, mAddr := a0.Addr4.String(), b0.Addr4.String(), m0.Addr4.String()
	a := startNode(t, a0, map[string]string{"lan.conf": btnsPolicy(l, "lan", bAddr, ""), "mitm.conf": btnsPolicy(l, "mitm", mAddr, "")})
	b := startNode(t, b0, map[string]string{"lan.conf": btnsPolicy(l, "lan", aAddr, "")})
	m := startNode(t, m0, map[string]string{"lan.conf": btnsPolicy(l, "lan", bAddr, "")})
	for _, p := range [][2]*node{{a, b}, {b, a}, {a, m}, {m, a}, {b, m}, {m, b}} {
		p[0].trust(p[1])
	}
	a.waitConnLoaded(btnsauth.ConnName("lan", b.hostFP()))
	a.waitConnLoaded(btnsauth.ConnName("mitm", m.hostFP()))
	m.waitConnLoaded(btnsauth.ConnName("lan", b.hostFP()))

	server := startApp(t, b0, "server", bAddr+":"+appPort)
	server.waitLine(5*time.Second, "listening")

	// Directly: a to b.
	if err := a.initiate("lan", b); err != nil {
		t.Fatal(err)
	}
	direct := startApp(t, a0, "client", bAddr+":"+appPort)
	direct.waitLine(5*time.Second, "connected")
	la, cbA := a.channelBinding(bAddr)
	lb, cbB := b.channelBinding(aAddr)
	if cbA != cbB {
		t.Fatalf("the two ends of a direct flow have different channel bindings: a %s, b %s", cbA, cbB)
	}
	if la.Peer.Fingerprint != b.status().HostKey.Fingerprint || lb.Peer.Fingerprint != a.status().HostKey.Fingerprint {
		t.Errorf("direct flow peers: a sees %s, b sees %s", la.Peer.Fingerprint, lb.Peer.Fingerprint)
	}
	t.Logf("direct flow: both ends %s", cbA)
	direct.proc.Stop()

	// Through m: a's application connects to m (as if a name resolved to
	// m), and m relays to b.
	if err := a.initiate("mitm", m); err != nil {
		t.Fatal(err)
	}
	if err := m.initiate("lan", b); err != nil {
		t.Fatal(err)
	}
	relay := startApp(t, m0, "relay", mAddr+":"+appPort, "BTNSD_TEST_TARGET="+bAddr+":"+appPort)
	relay.waitLine(5*time.Second, "listening")
	client := startApp(t, a0, "client", mAddr+":"+appPort)
	client.waitLine(5*time.Second, "connected")
	relay.waitLine(5*time.Second, "relaying")
	_, cbAtA := a.channelBinding(mAddr)
	_, cbAtB := b.channelBinding(mAddr)
	if cbAtA == cbAtB {
		t.Fatalf("a man in the middle with its own key left both ends the same channel binding %s", cbAtA)
	}
	if cbAtA == cbA || cbAtB == cbB {
		t.Errorf("the relayed flow has the direct flow's channel binding")
	}
	t.Logf("relayed flow: a %s, b %s", cbAtA, cbAtB)
}
