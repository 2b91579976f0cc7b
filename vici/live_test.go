package vici

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/btnsd/btnsd/integration/lab"
)

// TestLive runs the Client and Watch against a real charon in a lab host
// (package integration/lab). The integration package has the full two-host
// tests; this checks the protocol details (key names, error texts) on one
// charon.
func TestLive(t *testing.T) {
	l := lab.Start(t, lab.Options{Hosts: []string{"a"}})
	lab.StartCharons(t, l)
	sock := l.Host("a").VICISocket()
	ctx := t.Context()
	c := New(sock, WithLogf(t.Logf))
	defer c.Close()
	watchCtx, stopWatch := t.Context(), func() {}
	_ = watchCtx
	events := Watch(ctx, sock, WithLogf(t.Logf))
	if ev := <-events; ev.(Resync).Reason != ReasonConnected {
		t.Fatalf("first event %+v", ev)
	}
	defer stopWatch()

	v, err := c.Version(ctx)
	if err != nil || v.Daemon != "charon" || v.Version == "" {
		t.Fatalf("Version = %+v, %v", v, err)
	}
	t.Logf("version: %+v", v)

	conn := msgOf(
		"version", "2",
		"local_addrs", []string{"127.0.0.1"},
		"remote_addrs", []string{"127.0.0.2"},
		"local", msgOf("auth", "psk", "id", "local.test"),
		"remote", msgOf("auth", "psk", "id", "%any"),
		"children", msgOf("c1", msgOf("local_ts", []string{"10.1.0.0/24[tcp/http]"}, "remote_ts", []string{"dynamic"}, "mode", "tunnel")),
	)
	if err := c.LoadConn(ctx, "btnsd-live", conn); err != nil {
		t.Fatalf("LoadConn: %v", err)
	}
	names, err := c.GetConns(ctx)
	if err != nil || !slices.Contains(names, "btnsd-live") {
		t.Fatalf("GetConns = %v, %v", names, err)
	}
	conns, err := c.ListConns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, cn := range conns {
		if cn.Name == "btnsd-live" {
			t.Logf("list-conn:\n%s", cn.Body.Format())
			ch := cn.Body.Section("children").Section("c1")
			for _, s := range append(ch.List("local-ts"), ch.List("remote-ts")...) {
				if _, err := ParseTS(s); err != nil {
					t.Errorf("charon's TS: %v", err)
				}
			}
		}
	}

	bad := msgOf("local", msgOf("auth", "null"))
	err = c.LoadConn(ctx, "btnsd-bad", bad)
	t.Logf("load-conn of a bad conn: %v", err)
	if !errors.Is(err, ErrCommandFailed) {
		t.Errorf("bad conn: %v", err)
	}

	err = c.UnloadConn(ctx, "btnsd-nonexistent")
	t.Logf("unload-conn of an unknown conn: %v", err)
	if !errors.Is(err, ErrCommandFailed) {
		t.Errorf("unknown conn: %v", err)
	}

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	id, err := c.LoadKey(ctx, "ed25519", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	t.Logf("load-key: id %q, %v", id, err)
	if err != nil || len(id) != 40 {
		t.Errorf("LoadKey = %q, %v", id, err)
	}

	if err := c.LoadShared(ctx, SharedSecret{ID: "btnsd-live-psk", Type: "IKE", Data: []byte("0123456789abcdef0123456789abcdef")}); err != nil {
		t.Errorf("LoadShared: %v", err)
	}
	if err := c.UnloadShared(ctx, "btnsd-live-psk"); err != nil {
		t.Errorf("UnloadShared: %v", err)
	}
	err = c.UnloadShared(ctx, "btnsd-live-psk")
	t.Logf("unload-shared of an unknown id: %v", err)

	sas, err := c.ListSAs(ctx, ListSAsFilter{NoBlock: true})
	t.Logf("list-sas: %d SAs, %v", len(sas), err)
	if err != nil {
		t.Error(err)
	}

	err = c.Initiate(ctx, InitiateOpts{Child: "nosuchchild"})
	t.Logf("initiate of an unknown child: %v", err)
	err = c.Initiate(ctx, InitiateOpts{Child: ""})
	t.Logf("initiate without child: %v", err)
	start := time.Now()
	err = c.Initiate(ctx, InitiateOpts{Child: "c1", IKE: "btnsd-live", Timeout: 2 * time.Second})
	t.Logf("initiate to nowhere (%v): %v", time.Since(start), err)
	var ce *CommandError
	if errors.As(err, &ce) && len(ce.Log) == 0 {
		t.Errorf("no control-log lines in %v", err)
	}

	err = c.Terminate(ctx, TerminateOpts{IKE: "btnsd-nonexistent"})
	t.Logf("terminate without match: %v", err)
	err = c.Terminate(ctx, TerminateOpts{IKE: "btnsd-live", Force: true, Timeout: -1})
	t.Logf("terminate btnsd-live: %v", err)
	err = c.Rekey(ctx, RekeyOpts{IKEID: 999})
	t.Logf("rekey without match: %v", err)
	err = c.Rekey(ctx, RekeyOpts{})
	t.Logf("rekey without selector: %v", err)
	_, err = c.Call(ctx, "no-such-command", nil)
	t.Logf("unknown command: %v", err)

	// Events from the initiation attempt, if any.
	timeout := time.After(time.Second)
	for done := false; !done; {
		select {
		case ev := <-events:
			t.Logf("event %T %+v", ev, ev)
		case <-timeout:
			done = true
		}
	}
	if err := c.UnloadConn(ctx, "btnsd-live"); err != nil {
		t.Errorf("UnloadConn: %v", err)
	}
	t.Logf("stats: %v", c.Stats())
}

// TestLivePair brings up SAs between two charons of lab hosts and checks
// the events and listings that result.
func TestLivePair(t *testing.T) {
	l := lab.Start(t, lab.Options{Hosts: []string{"a", "b"}})
	lab.StartCharons(t, l)
	sockA, sockB := l.Host("a").VICISocket(), l.Host("b").VICISocket()
	addrA, addrB := l.Host("a").Addr4.String(), l.Host("b").Addr4.String()
	ctx := t.Context()
	a, b := New(sockA, WithLogf(t.Logf)), New(sockB, WithLogf(t.Logf))
	defer a.Close()
	defer b.Close()
	events := Watch(ctx, sockA, WithLogf(t.Logf))
	eventsB := Watch(ctx, sockB, WithLogf(t.Logf))
	for _, ch := range []<-chan Event{events, eventsB} {
		if ev := <-ch; ev.(Resync).Reason != ReasonConnected {
			t.Fatalf("first event %+v", ev)
		}
	}
	side := func(local, remote, lid, rid string) *Msg {
		return msgOf(
			"version", "2",
			"local_addrs", []string{local}, "remote_addrs", []string{remote},
			"local", msgOf("auth", "psk", "id", lid),
			"remote", msgOf("auth", "psk", "id", rid),
			"children", msgOf("c", msgOf("local_ts", []string{local + "/32"}, "remote_ts", []string{remote + "/32[tcp]"}, "mode", "tunnel")),
		)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	psk := SharedSecret{ID: "btnsd-pair", Type: "IKE", Data: []byte("0123456789abcdef0123456789abcdef"), Owners: []string{"a.test", "b.test"}}
	must(a.LoadShared(ctx, psk))
	must(b.LoadShared(ctx, psk))
	must(a.LoadConn(ctx, "btnsd-pair", side(addrA, addrB, "a.test", "b.test")))
	must(b.LoadConn(ctx, "btnsd-pair", side(addrB, addrA, "b.test", "a.test")))
	defer func() {
		_ = a.Terminate(ctx, TerminateOpts{IKE: "btnsd-pair", Force: true, Timeout: -1})
		for _, c := range []*Client{a, b} {
			_ = c.UnloadConn(ctx, "btnsd-pair")
			_ = c.UnloadShared(ctx, "btnsd-pair")
		}
	}()

	collect := func(d time.Duration) []Event {
		var out []Event
		timeout := time.After(d)
		for {
			select {
			case ev := <-events:
				t.Logf("event %T %+v", ev, ev)
				out = append(out, ev)
			case ev := <-eventsB:
				t.Logf("event on b %T", ev)
			case <-timeout:
				return out
			}
		}
	}

	must(a.Initiate(ctx, InitiateOpts{Child: "c", IKE: "btnsd-pair", Timeout: 5 * time.Second}))
	evs := collect(time.Second)
	var ikeUp IKEUpDown
	var childUp ChildUpDown
	for _, ev := range evs {
		switch e := ev.(type) {
		case IKEUpDown:
			ikeUp = e
		case ChildUpDown:
			childUp = e
		}
	}
	if !ikeUp.Up || ikeUp.IKE.RemoteID != "b.test" || !ikeUp.IKE.Initiator || ikeUp.IKE.State != "ESTABLISHED" {
		t.Errorf("ike-updown: %+v", ikeUp)
	}
	if !childUp.Up || childUp.Child.Name != "c" || childUp.Child.Key != "c-"+strconv.FormatUint(childUp.Child.UniqueID, 10) ||
		len(childUp.Child.RemoteTS) != 1 || childUp.Child.RemoteTS[0].Proto != 6 || childUp.Child.SPIIn == "" {
		t.Errorf("child-updown: %+v", childUp)
	}
	sas, err := a.ListSAs(ctx, ListSAsFilter{IKE: "btnsd-pair"})
	must(err)
	if len(sas) != 1 || sas[0].UniqueID != ikeUp.IKE.UniqueID || len(sas[0].Children) != 1 ||
		sas[0].Children[0].SPIIn != childUp.Child.SPIIn {
		t.Errorf("list-sas: %+v", sas)
	}

	must(a.Rekey(ctx, RekeyOpts{Child: "c"}))
	var cr ChildRekey
	for _, ev := range collect(time.Second) {
		if e, ok := ev.(ChildRekey); ok {
			cr = e
		}
	}
	if cr.Old.UniqueID != childUp.Child.UniqueID || cr.New.UniqueID == cr.Old.UniqueID || cr.New.ReqID != cr.Old.ReqID ||
		cr.Old.SPIIn != childUp.Child.SPIIn || cr.New.SPIIn == cr.Old.SPIIn {
		t.Errorf("child-rekey: %+v", cr)
	}

	must(a.Rekey(ctx, RekeyOpts{IKEID: ikeUp.IKE.UniqueID}))
	var ir IKERekey
	for _, ev := range collect(time.Second) {
		if e, ok := ev.(IKERekey); ok {
			ir = e
		}
	}
	if ir.Old.UniqueID != ikeUp.IKE.UniqueID || ir.New.UniqueID == ir.Old.UniqueID || ir.New.RemoteID != "b.test" {
		t.Errorf("ike-rekey: %+v", ir)
	}

	must(a.Terminate(ctx, TerminateOpts{IKE: "btnsd-pair", Timeout: 5 * time.Second}))
	var downs int
	for _, ev := range collect(time.Second) {
		switch e := ev.(type) {
		case IKEUpDown:
			if !e.Up && e.IKE.UniqueID == ir.New.UniqueID {
				downs++
			}
		case ChildUpDown:
			if !e.Up && e.Child.UniqueID == cr.New.UniqueID {
				downs++
			}
		}
	}
	if downs != 2 {
		t.Errorf("after terminate: %d down events for the rekeyed SAs, want 2", downs)
	}
	sas, err = a.ListSAs(ctx, ListSAsFilter{})
	if err != nil || len(sas) != 0 {
		t.Errorf("after terminate: %+v, %v", sas, err)
	}
}
