package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/btnsd/btnsd/integration/lab"
	"github.com/btnsd/btnsd/vici"
)

// rawKeyConn is the load-conn body of a raw-key connection from local to
// remote: both keys pinned, the peer identified by its keyid, host-to-host
// traffic selectors in the lab's mode.
func rawKeyConn(l *lab.Lab, local, remote *lab.Host, lk, rk rawKey) *vici.Msg {
	c := vici.NewMsg()
	c.Set("version", "2")
	c.Set("local_addrs", []string{local.Addr4.String()})
	c.Set("remote_addrs", []string{remote.Addr4.String()})
	c.Set("proposals", []string{"aes128-sha256-x25519"})
	c.Set("dpd_delay", "2s")
	lo := vici.NewMsg()
	lo.Set("auth", "pubkey")
	lo.Set("pubkeys", []string{string(lk.PublicPEM)})
	c.Set("local", lo)
	re := vici.NewMsg()
	re.Set("auth", "pubkey")
	re.Set("pubkeys", []string{string(rk.PublicPEM)})
	re.Set("id", "keyid:#"+rk.KeyID)
	c.Set("remote", re)
	ch := vici.NewMsg()
	ch.Set("mode", l.Kernel.Mode())
	ch.Set("esp_proposals", []string{"aes128gcm16"})
	ch.Set("dpd_action", "clear")
	children := vici.NewMsg()
	children.Set("rk", ch)
	c.Set("children", children)
	return c
}

// host bundles a lab host with its VICI command client, event stream and
// raw key.
type host struct {
	*lab.Host
	c      *vici.Client
	events <-chan vici.Event
	key    rawKey
}

func startHost(t *testing.T, ctx context.Context, h *lab.Host, keyType string) *host {
	t.Helper()
	c := vici.New(h.VICISocket(), vici.WithLogf(t.Logf))
	t.Cleanup(func() { c.Close() })
	k := newRawKey(t, keyType)
	if _, err := c.LoadKey(ctx, "any", k.PrivatePEM); err != nil {
		t.Fatalf("%s: load-key: %v", h.Name, err)
	}
	hh := &host{Host: h, c: c, key: k, events: vici.Watch(ctx, h.VICISocket(), vici.WithLogf(t.Logf), vici.WithBackoff(50*time.Millisecond, 500*time.Millisecond))}
	expectEvent(t, hh, "initial resync", func(e vici.Event) bool { _, ok := e.(vici.Resync); return ok })
	return hh
}

// expectEvent waits up to 15 s for an event of h matching pred, discarding
// others, and returns it.
func expectEvent(t *testing.T, h *host, what string, pred func(vici.Event) bool) vici.Event {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case e, ok := <-h.events:
			if !ok {
				t.Fatalf("%s: event stream closed while waiting for %s", h.Name, what)
			}
			if pred(e) {
				return e
			}
		case <-timeout:
			t.Fatalf("%s: no %s within 15s", h.Name, what)
		}
	}
}

func findChild(t *testing.T, ctx context.Context, h *host) (vici.IKESA, vici.ChildSA) {
	t.Helper()
	sas, err := h.c.ListSAs(ctx, vici.ListSAsFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ike := range sas {
		for _, ch := range ike.Children {
			if ch.State == "INSTALLED" {
				return ike, ch
			}
		}
	}
	t.Fatalf("%s: no installed CHILD_SA in %+v", h.Name, sas)
	return vici.IKESA{}, vici.ChildSA{}
}

// TestVICIRawKeySA brings up a raw-key SA between two real charons through
// the vici package and follows it through its whole life: up events on
// both sides with the peer's keyid, protected traffic, child and IKE
// rekeys, terminate.
func TestVICIRawKeySA(t *testing.T) {
	for _, keyType := range []string{"ed25519", "rsa"} {
		t.Run(keyType, func(t *testing.T) {
			l := lab.Start(t, lab.Options{Hosts: []string{"a", "b"}})
			lab.StartCharons(t, l)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			a := startHost(t, ctx, l.Host("a"), keyType)
			b := startHost(t, ctx, l.Host("b"), keyType)
			if err := a.c.LoadConn(ctx, "rk", rawKeyConn(l, a.Host, b.Host, a.key, b.key)); err != nil {
				t.Fatalf("a: load-conn: %v", err)
			}
			if err := b.c.LoadConn(ctx, "rk", rawKeyConn(l, b.Host, a.Host, b.key, a.key)); err != nil {
				t.Fatalf("b: load-conn: %v", err)
			}

			if err := a.c.Initiate(ctx, vici.InitiateOpts{Child: "rk", Timeout: 10 * time.Second}); err != nil {
				t.Fatalf("initiate: %v", err)
			}
			for _, side := range []struct {
				h    *host
				peer rawKey
			}{{a, b.key}, {b, a.key}} {
				e := expectEvent(t, side.h, "ike-updown up", func(e vici.Event) bool { u, ok := e.(vici.IKEUpDown); return ok && u.Up }).(vici.IKEUpDown)
				if e.IKE.RemoteID != side.peer.ColonKeyID() {
					t.Errorf("%s: ike-updown remote-id = %q, want the peer's keyid %q", side.h.Name, e.IKE.RemoteID, side.peer.ColonKeyID())
				}
				if e.IKE.State != "ESTABLISHED" || e.IKE.Name != "rk" {
					t.Errorf("%s: ike-updown: name %q state %q", side.h.Name, e.IKE.Name, e.IKE.State)
				}
				c := expectEvent(t, side.h, "child-updown up", func(e vici.Event) bool { u, ok := e.(vici.ChildUpDown); return ok && u.Up }).(vici.ChildUpDown)
				if c.Child.Name != "rk" || c.Child.State != "INSTALLED" || c.Child.Protocol != "ESP" {
					t.Errorf("%s: child-updown child = %+v", side.h.Name, c.Child)
				}
				if len(c.Child.LocalTS) != 1 || c.Child.LocalTS[0].Prefix.Addr() != side.h.Addr4 {
					t.Errorf("%s: child local TS = %v, want %s/32", side.h.Name, c.Child.LocalTS, side.h.Addr4)
				}
			}

			// Traffic through the SA moves the packet counters on both ends.
			if _, err := a.Run(ctx, "ping", "-c3", "-i0.2", "-W2", b.Addr4.String()); err != nil {
				t.Fatalf("ping through the SA: %v", err)
			}
			_, ac := findChild(t, ctx, a)
			_, bc := findChild(t, ctx, b)
			if ac.PacketsOut < 3 || ac.PacketsIn < 3 || bc.PacketsIn < 3 || bc.PacketsOut < 3 {
				t.Errorf("packet counters after 3 pings: a out/in %d/%d, b out/in %d/%d", ac.PacketsOut, ac.PacketsIn, bc.PacketsOut, bc.PacketsIn)
			}

			// Child rekey: same reqid, new SPIs and uniqueid.
			if err := a.c.Rekey(ctx, vici.RekeyOpts{ChildID: ac.UniqueID}); err != nil {
				t.Fatalf("rekey child: %v", err)
			}
			cr := expectEvent(t, a, "child-rekey", func(e vici.Event) bool { _, ok := e.(vici.ChildRekey); return ok }).(vici.ChildRekey)
			if cr.Old.UniqueID != ac.UniqueID || cr.New.UniqueID == cr.Old.UniqueID || cr.New.ReqID != cr.Old.ReqID || cr.New.SPIIn == cr.Old.SPIIn {
				t.Errorf("child-rekey old %+v new %+v", cr.Old, cr.New)
			}
			expectEvent(t, b, "child-rekey on the responder", func(e vici.Event) bool { _, ok := e.(vici.ChildRekey); return ok })

			// IKE rekey: a new IKE SA (uniqueid moves), same peer.
			ike, _ := findChild(t, ctx, a)
			if err := a.c.Rekey(ctx, vici.RekeyOpts{IKEID: ike.UniqueID}); err != nil {
				t.Fatalf("rekey IKE: %v", err)
			}
			ir := expectEvent(t, a, "ike-rekey", func(e vici.Event) bool { _, ok := e.(vici.IKERekey); return ok }).(vici.IKERekey)
			if ir.Old.UniqueID != ike.UniqueID || ir.New.UniqueID == ike.UniqueID || ir.New.RemoteID != b.key.ColonKeyID() {
				t.Errorf("ike-rekey old %d new %d remote-id %q", ir.Old.UniqueID, ir.New.UniqueID, ir.New.RemoteID)
			}

			// Terminate the new IKE SA (by id: the rekeyed one may still be
			// deleting): down events on both sides.
			if err := a.c.Terminate(ctx, vici.TerminateOpts{IKEID: ir.New.UniqueID, Timeout: 10 * time.Second}); err != nil {
				t.Fatalf("terminate: %v", err)
			}
			for _, h := range []*host{a, b} {
				expectEvent(t, h, "ike-updown down", func(e vici.Event) bool { u, ok := e.(vici.IKEUpDown); return ok && !u.Up })
			}
			sas, err := b.c.ListSAs(ctx, vici.ListSAsFilter{})
			if err != nil || len(sas) != 0 {
				t.Errorf("b after terminate: %d SAs, err %v", len(sas), err)
			}
		})
	}
}

// TestVICIStreamSurvivesCharonRestart kills charon under a live event
// stream and command client: the stream must reconnect by itself and tell
// its consumer to resynchronise, and commands must work again.
func TestVICIStreamSurvivesCharonRestart(t *testing.T) {
	l := lab.Start(t, lab.Options{Hosts: []string{"a"}})
	lab.StartCharons(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := startHost(t, ctx, l.Host("a"), "ed25519")
	if _, err := a.c.Version(ctx); err != nil {
		t.Fatal(err)
	}

	a.KillCharon()
	if _, err := a.c.Version(ctx); err == nil || !vici.Unavailable(err) {
		t.Fatalf("version with charon dead: err = %v, want an Unavailable error", err)
	}
	if err := a.StartCharon(); err != nil {
		t.Fatal(err)
	}
	r := expectEvent(t, a, "resync after restart", func(e vici.Event) bool { _, ok := e.(vici.Resync); return ok }).(vici.Resync)
	t.Logf("resync: %s", r.Reason)
	v, err := a.c.Version(ctx)
	if err != nil {
		t.Fatalf("version after restart: %v", err)
	}
	if v.Daemon != "charon" {
		t.Errorf("version: %+v", v)
	}
	// The restarted charon lost everything loaded over VICI.
	if err := a.c.LoadConn(ctx, "x", vici.NewMsg()); err != nil {
		t.Fatalf("load-conn after restart: %v", err)
	}
	names, err := a.c.GetConns(ctx)
	if err != nil || fmt.Sprint(names) != "[x]" {
		t.Fatalf("get-conns = %v, %v", names, err)
	}
}
