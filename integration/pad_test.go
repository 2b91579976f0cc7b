package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btnsd/btnsd/btnsauth"
	"github.com/btnsd/btnsd/fingerprints"
	"github.com/btnsd/btnsd/integration/lab"
	"github.com/btnsd/btnsd/vici"
)

// btnsPolicy is a BTNS policy connection: accept trusted keys from any
// address, initiate to target; btns holds extra settings of the btns
// section.
func btnsPolicy(l *lab.Lab, name, target, btns string) string {
	return fmt.Sprintf(`connections {
  %s {
    remote_addrs = %s, %%any
    proposals = aes128-sha256-x25519
    dpd_delay = 2s
    btns {
      enabled = yes
      %s
    }
    children {
      host {
        mode = %s
        esp_proposals = aes128gcm16
        dpd_action = clear
      }
    }
  }
}
`, name, target, btns, l.Kernel.Mode())
}

// hostFP returns the hex fingerprint of n's host key.
func (n *node) hostFP() string {
	n.t.Helper()
	fp, err := fingerprints.ParseFingerprint(n.status().HostKey.Fingerprint)
	if err != nil {
		n.t.Fatal(err)
	}
	return fp.Hex()
}

// hostKeyID returns n's host keyid as list-sas prints it.
func (n *node) hostKeyID() string { return n.status().HostKey.KeyID }

// initiate brings up the BTNS SA of policy toward peer.
func (n *node) initiate(policy string, peer *node) error {
	name := btnsauth.ConnName(policy, peer.hostFP())
	return n.vc.Initiate(context.Background(), vici.InitiateOpts{IKE: name, Child: "host", Timeout: 10 * time.Second})
}

// saFrom returns n's established IKE SA whose peer asserted remoteID.
func (n *node) saFrom(remoteID string) (vici.IKESA, bool) {
	for _, sa := range n.established() {
		if sa.RemoteID == remoteID {
			return sa, true
		}
	}
	return vici.IKESA{}, false
}

func (n *node) waitConnLoaded(name string) {
	n.t.Helper()
	n.eventually(5*time.Second, "connection "+name+" loaded", func() bool {
		for _, c := range n.status().Conns {
			if c.Name == name {
				return c.Loaded
			}
		}
		return false
	})
}

// TestBTNSBetweenTrustedKeys: two hosts that trusted each other's keys with
// btnsctl key get a BTNS SA from either side, identified by key whatever
// the address.
func TestBTNSBetweenTrustedKeys(t *testing.T) {
	l := lab.Start(t, lab.Options{Hosts: []string{"a", "b"}})
	a0, b0 := l.Host("a"), l.Host("b")
	a := startNode(t, a0, map[string]string{"lan.conf": btnsPolicy(l, "lan", b0.Addr4.String(), "")})
	b := startNode(t, b0, map[string]string{"lan.conf": btnsPolicy(l, "lan", a0.Addr4.String(), "")})
	a.trust(b)
	b.trust(a)
	a.waitConnLoaded(btnsauth.ConnName("lan", b.hostFP()))
	b.waitConnLoaded(btnsauth.ConnName("lan", a.hostFP()))
	if n := len(a.status().Audit); n != 0 {
		t.Errorf("audit findings on a plain host: %+v", a.status().Audit)
	}

	// b initiates: a sees b's key, from b's address.
	if err := b.initiate("lan", a); err != nil {
		t.Fatalf("b -> a: %v", err)
	}
	sa, ok := a.saFrom(b.hostKeyID())
	if !ok || sa.Name != btnsauth.ConnName("lan", b.hostFP()) || sa.RemoteHost != b0.Addr4 {
		t.Fatalf("a after b initiated: %+v", a.established())
	}
	if _, err := b0.Run(context.Background(), "ping", "-c2", "-i0.2", "-W2", a0.Addr4.String()); err != nil {
		t.Fatalf("traffic over the BTNS SA: %v", err)
	}
	if err := a.vc.Terminate(context.Background(), vici.TerminateOpts{IKEID: sa.UniqueID, Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}

	// a initiates: b sees a's key.
	if err := a.initiate("lan", b); err != nil {
		t.Fatalf("a -> b: %v", err)
	}
	if _, ok := b.saFrom(a.hostKeyID()); !ok {
		t.Fatalf("b after a initiated: %+v", b.established())
	}
	for _, sa := range a.established() {
		a.vc.Terminate(context.Background(), vici.TerminateOpts{IKEID: sa.UniqueID, Timeout: 5 * time.Second})
	}

	// b moves to another address: its key, not its address, is its
	// identity.
	ctx := context.Background()
	moved := "10.99.0.12"
	if _, err := b0.Run(ctx, "ip", "addr", "del", b0.Addr4.String()+"/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	if _, err := b0.Run(ctx, "ip", "addr", "add", moved+"/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := b.initiate("lan", a); err != nil {
		t.Fatalf("b -> a from %s: %v", moved, err)
	}
	sa, ok = a.saFrom(b.hostKeyID())
	if !ok || sa.RemoteHost.String() != moved {
		t.Fatalf("a after b initiated from %s: %+v", moved, a.established())
	}
}

// TestBTNSUnknownKeysAndAnonymousPeers: an unknown key is refused; with
// anonymous peers on, a peer on the public PSK gets an SA in the anonymous
// connection; with it off, it is refused.
func TestBTNSUnknownKeysAndAnonymousPeers(t *testing.T) {
	l := lab.Start(t, lab.Options{Hosts: []string{"a", "c"}})
	a0, c0 := l.Host("a"), l.Host("c")
	a := startNode(t, a0, map[string]string{"lan.conf": btnsPolicy(l, "lan", c0.Addr4.String(), "")})
	c := startNode(t, c0, map[string]string{"lan.conf": btnsPolicy(l, "lan", a0.Addr4.String(), "anonymous = yes")})
	c.trust(a) // c knows a; a does not know c
	c.waitConnLoaded(btnsauth.ConnName("lan", a.hostFP()))

	if err := c.initiate("lan", a); err == nil {
		t.Fatal("a accepted a key it never trusted")
	}
	if sas := a.established(); len(sas) != 0 {
		t.Fatalf("a has SAs with an unknown key: %+v", sas)
	}

	anon := btnsauth.ConnName("lan", "")
	initiateAnon := func() error {
		return c.vc.Initiate(context.Background(), vici.InitiateOpts{IKE: anon, Child: "host", Timeout: 10 * time.Second})
	}
	if err := initiateAnon(); err == nil {
		t.Fatal("a accepted an anonymous peer with anonymous peers off")
	}

	a.writePolicy("lan.conf", btnsPolicy(l, "lan", c0.Addr4.String(), "anonymous = yes"))
	a.waitConnLoaded(anon)
	if err := initiateAnon(); err != nil {
		t.Fatalf("anonymous peer refused with anonymous peers on: %v", err)
	}
	var got []string
	for _, sa := range a.established() {
		got = append(got, sa.Name)
	}
	if !slices.Equal(got, []string{anon}) {
		t.Fatalf("a's SAs: %v, want one in %s", got, anon)
	}
}

// TestStrictConnectionStaysStrict: a strict connection loaded with swanctl
// beside btnsd keeps its peer: an anonymous peer asserting the strict peer's
// keyid neither gets into it nor deletes its IKE SA with INITIAL_CONTACT.
func TestStrictConnectionStaysStrict(t *testing.T) {
	l := lab.Start(t, lab.Options{Hosts: []string{"a", "b", "c"}})
	a0, b0, c0 := l.Host("a"), l.Host("b"), l.Host("c")
	a := startNode(t, a0, map[string]string{"lan.conf": btnsPolicy(l, "lan", c0.Addr4.String(), "peers = none\n      anonymous = yes")})
	ctx := context.Background()

	// b is a plain strongSwan host with a raw key; a pins it in a strict
	// connection loaded with swanctl, as an administrator would.
	if err := b0.StartCharon(); err != nil {
		t.Fatal(err)
	}
	bKey := newRawKey(t, "ed25519")
	bc := vici.New(b0.VICISocket())
	defer bc.Close()
	if _, err := bc.LoadKey(ctx, "any", bKey.PrivatePEM); err != nil {
		t.Fatal(err)
	}
	aPub := a.mustCtl("key", "host", "--format", "pem")
	sw := filepath.Join(a0.Dir, "swanctl")
	for _, d := range []string{"conf.d", "pubkey", "x509", "x509ca", "private", "rsa", "ecdsa", "pkcs8"} {
		os.MkdirAll(filepath.Join(sw, d), 0o755)
	}
	os.WriteFile(filepath.Join(sw, "pubkey", "a.pem"), []byte(aPub), 0o644)
	os.WriteFile(filepath.Join(sw, "pubkey", "b.pem"), bKey.PublicPEM, 0o644)
	os.WriteFile(filepath.Join(sw, "swanctl.conf"), []byte(fmt.Sprintf(`connections {
  strict {
    remote_addrs = %s
    proposals = aes128-sha256-x25519
    local {
      auth = pubkey
      pubkeys = a.pem
    }
    remote {
      auth = pubkey
      pubkeys = b.pem
      id = "keyid:#%s"
    }
    children {
      strict {
        mode = %s
        esp_proposals = aes128gcm16
      }
    }
  }
}
`, b0.Addr4, bKey.KeyID, l.Kernel.Mode())), 0o644)
	if out, err := a0.Run(ctx, "env", "SWANCTL_DIR="+sw, "swanctl", "--load-conns", "--uri", "unix://"+a0.VICISocket()); err != nil {
		t.Fatalf("swanctl --load-conns: %v\n%s", err, out)
	}
	// swanctl --load-conns unloads every connection its files do not name,
	// btnsd's too: btnsd must notice and load them again.
	a.waitConnLoaded(btnsauth.ConnName("lan", ""))
	a.eventually(5*time.Second, "btnsd's anonymous connection back in charon", func() bool {
		names, _ := a.vc.GetConns(ctx)
		return slices.Contains(names, btnsauth.ConnName("lan", "")) && slices.Contains(names, "strict")
	})

	bConn := rawKeyConn(l, b0, a0, bKey, rawKey{PublicPEM: []byte(aPub), KeyID: strings.ReplaceAll(a.hostKeyID(), ":", "")})
	if err := bc.LoadConn(ctx, "strict", bConn); err != nil {
		t.Fatal(err)
	}
	if err := bc.Initiate(ctx, vici.InitiateOpts{Child: "rk", Timeout: 10 * time.Second}); err != nil {
		t.Fatalf("b -> a strict: %v", err)
	}
	strictSA, ok := a.saFrom(bKey.ColonKeyID())
	if !ok || strictSA.Name != "strict" {
		t.Fatalf("a's SAs after b initiated: %+v", a.established())
	}

	// c: an anonymous peer that claims to be b.
	if err := c0.StartCharon(); err != nil {
		t.Fatal(err)
	}
	cc := vici.New(c0.VICISocket())
	defer cc.Close()
	psk := btnsauth.AnonymousSecret()
	if err := cc.LoadShared(ctx, vici.SharedSecret{ID: "public", Type: "IKE", Data: psk.Data}); err != nil {
		t.Fatal(err)
	}
	evil := vici.NewMsg()
	evil.Set("remote_addrs", []string{a0.Addr4.String()})
	evil.Set("proposals", []string{"aes128-sha256-x25519"})
	lo := vici.NewMsg()
	lo.Set("auth", "psk")
	lo.Set("id", "keyid:#"+bKey.KeyID)
	evil.Set("local", lo)
	// c asks for a's anonymous identity (IDr), which selects the public
	// PSK on a: without it a would find no key and refuse c outright.
	re := vici.NewMsg()
	re.Set("auth", "psk")
	re.Set("id", btnsauth.AnonymousID)
	evil.Set("remote", re)
	ch := vici.NewMsg()
	ch.Set("mode", l.Kernel.Mode())
	ch.Set("esp_proposals", []string{"aes128gcm16"})
	children := vici.NewMsg()
	children.Set("evil", ch)
	evil.Set("children", children)
	if err := cc.LoadConn(ctx, "evil", evil); err != nil {
		t.Fatal(err)
	}
	err := cc.Initiate(ctx, vici.InitiateOpts{Child: "evil", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("c (anonymous, claiming b's keyid) -> a: %v", err)
	}

	var inStrict, inAnon int
	for _, sa := range a.established() {
		switch {
		case sa.Name == "strict" && sa.RemoteHost == c0.Addr4:
			inStrict++
		case sa.Name == btnsauth.ConnName("lan", "") && sa.RemoteHost == c0.Addr4:
			inAnon++
		}
	}
	if inStrict != 0 {
		t.Fatalf("an anonymous peer got into the strict connection: %+v", a.established())
	}
	if inAnon != 1 {
		t.Fatalf("c's initiate succeeded but a has no anonymous SA with it: %+v", a.established())
	}
	var after []vici.IKESA
	for _, sa := range a.established() {
		if sa.Name == "strict" {
			after = append(after, sa)
		}
	}
	if len(after) != 1 || after[0].UniqueID != strictSA.UniqueID || after[0].RemoteHost != b0.Addr4 {
		t.Fatalf("b's strict IKE SA #%d did not survive c: %+v", strictSA.UniqueID, a.established())
	}
}

// TestPolicyEditsApplyIncrementally: an edit takes effect within 1 s and
// re-sends only the changed connection; a broken edit leaves the previous
// connections loaded and is reported with file:line.
func TestPolicyEditsApplyIncrementally(t *testing.T) {
	l := lab.Start(t, lab.Options{Hosts: []string{"a"}})
	a0 := l.Host("a")
	plain := func(addr string) string {
		return fmt.Sprintf("connections {\n  office {\n    remote_addrs = %s\n    local {\n      auth = psk\n    }\n    remote {\n      auth = psk\n    }\n  }\n}\n", addr)
	}
	a := startNode(t, a0, map[string]string{
		"lan.conf":    btnsPolicy(l, "lan", "10.99.0.2", ""),
		"office.conf": plain("192.0.2.1"),
	})
	ctx := context.Background()
	remoteAddrs := func(name string) []string {
		conns, err := a.vc.ListConns(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range conns {
			if c.Name == name {
				return c.Body.List("remote_addrs")
			}
		}
		return nil
	}
	a.waitConnLoaded("btns.office")
	before := a.status().VICICalls["load-conn"]

	a.writePolicy("office.conf", plain("192.0.2.7"))
	took := a.eventually(time.Second, "the edit in charon", func() bool {
		return slices.Equal(remoteAddrs("btns.office"), []string{"192.0.2.7"})
	})
	t.Logf("edit applied in %v", took)
	time.Sleep(100 * time.Millisecond)
	if n := a.status().VICICalls["load-conn"] - before; n != 1 {
		t.Errorf("the edit sent %d load-conn calls, want 1", n)
	}

	a.writePolicy("office.conf", "connections {\n  office {\n    remote_addrs = 192.0.2.9\n    local {\n      auth = psk\n  }\n}\n")
	var perr string
	a.eventually(time.Second, "the broken file reported", func() bool {
		for _, f := range a.status().Policies {
			if strings.HasSuffix(f.File, "/office.conf") {
				perr = f.Error
				return f.Error != "" && f.Running == "last-good"
			}
		}
		return false
	})
	if !strings.Contains(perr, filepath.Join(a.root, "policy.d", "office.conf")+":") {
		t.Errorf("error %q does not name file:line", perr)
	}
	time.Sleep(100 * time.Millisecond)
	if got := remoteAddrs("btns.office"); !slices.Equal(got, []string{"192.0.2.7"}) {
		t.Errorf("after a broken edit charon has remote_addrs %v, want the last good 192.0.2.7", got)
	}
	out := a.mustCtl("policy", "status")
	if !strings.Contains(out, "office.conf") || !strings.Contains(out, "last-good") {
		t.Errorf("btnsctl policy status does not show the broken file:\n%s", out)
	}
}

// TestUntrustTerminatesAndLimits: an SA over a policy's limit is
// terminated; untrusting a key ends its SAs within 1 s.
func TestUntrustTerminatesAndLimits(t *testing.T) {
	l := lab.Start(t, lab.Options{Hosts: []string{"a", "b", "c"}})
	a0, b0, c0 := l.Host("a"), l.Host("b"), l.Host("c")
	a := startNode(t, a0, map[string]string{"lan.conf": btnsPolicy(l, "lan", b0.Addr4.String(), "max_sas = 1")})
	b := startNode(t, b0, map[string]string{"lan.conf": btnsPolicy(l, "lan", a0.Addr4.String(), "")})
	c := startNode(t, c0, map[string]string{"lan.conf": btnsPolicy(l, "lan", a0.Addr4.String(), "")})
	for _, peer := range []*node{b, c} {
		a.trust(peer)
		peer.trust(a)
		peer.waitConnLoaded(btnsauth.ConnName("lan", a.hostFP()))
		a.waitConnLoaded(btnsauth.ConnName("lan", peer.hostFP()))
	}

	if err := b.initiate("lan", a); err != nil {
		t.Fatal(err)
	}
	first, ok := a.saFrom(b.hostKeyID())
	if !ok {
		t.Fatal("no SA from b")
	}
	err := c.initiate("lan", a) // may fail if a terminates it at once
	t.Logf("c's IKE SA, one over the limit: %v", err)
	a.eventually(3*time.Second, "the IKE SA over max_sas terminated", func() bool {
		sas := a.established()
		return len(sas) == 1 && sas[0].UniqueID == first.UniqueID
	})
	a.eventually(time.Second, "a log line saying why", func() bool {
		return strings.Contains(a.btnsd.Tail(50), "policy lan allows at most 1 IKE SA(s) in all")
	})

	start := time.Now()
	a.mustCtl("key", "untrust", "b")
	a.eventually(time.Second, "b's SAs terminated after untrust", func() bool { return len(a.established()) == 0 })
	t.Logf("untrust to no SA: %v", time.Since(start))
	if err := b.initiate("lan", a); err == nil {
		t.Error("an untrusted key got an SA")
	}
}

// TestCharonRestartGetsFullState: charon killed and restarted gets every
// connection and the host key back from btnsd, and SAs come back.
func TestCharonRestartGetsFullState(t *testing.T) {
	l := lab.Start(t, lab.Options{Hosts: []string{"a", "b"}})
	a0, b0 := l.Host("a"), l.Host("b")
	a := startNode(t, a0, map[string]string{"lan.conf": btnsPolicy(l, "lan", b0.Addr4.String(), "anonymous = yes")})
	b := startNode(t, b0, map[string]string{"lan.conf": btnsPolicy(l, "lan", a0.Addr4.String(), "")})
	a.trust(b)
	b.trust(a)
	a.waitConnLoaded(btnsauth.ConnName("lan", b.hostFP()))
	b.waitConnLoaded(btnsauth.ConnName("lan", a.hostFP()))
	if err := b.initiate("lan", a); err != nil {
		t.Fatal(err)
	}

	a0.KillCharon()
	if err := a0.StartCharon(); err != nil {
		t.Fatal(err)
	}
	want := []string{btnsauth.ConnName("lan", ""), btnsauth.ConnName("lan", b.hostFP())}
	slices.Sort(want)
	a.eventually(5*time.Second, "btnsd's connections back in the new charon", func() bool {
		names, err := a.vc.GetConns(context.Background())
		slices.Sort(names)
		return err == nil && slices.Equal(names, want)
	})
	// btnsd may find the connections gone (its 2 s check) before its
	// event stream reconnects (backoff up to 2 s) and reports the restart.
	a.eventually(5*time.Second, "the restart counted in the status", func() bool { return a.status().Charon.Restarts == 1 })
	// b still believes in its old SA; a fresh one must come up.
	for _, sa := range b.sas() {
		b.vc.Terminate(context.Background(), vici.TerminateOpts{IKEID: sa.UniqueID, Force: true, Timeout: time.Second})
	}
	if err := b.initiate("lan", a); err != nil {
		t.Fatalf("SA after a's charon restart: %v", err)
	}
	if _, ok := a.saFrom(b.hostKeyID()); !ok {
		t.Fatalf("a has no SA with b after its restart: %+v", a.established())
	}
}
