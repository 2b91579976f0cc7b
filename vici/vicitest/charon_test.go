package vicitest_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"reflect"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/btnsd/btnsd/vici"
	"github.com/btnsd/btnsd/vici/vicitest"
)

// charonAPI is the method set of *vici.Client. TestMethodSets checks that
// it lists every method, so that Client and Charon cannot drift apart.
type charonAPI interface {
	Call(ctx context.Context, cmd string, in *vici.Msg) (*vici.Msg, error)
	Close() error
	GetConns(ctx context.Context) ([]string, error)
	Initiate(ctx context.Context, o vici.InitiateOpts) error
	ListConns(ctx context.Context) ([]vici.Conn, error)
	ListSAs(ctx context.Context, f vici.ListSAsFilter) ([]vici.IKESA, error)
	LoadConn(ctx context.Context, name string, conn *vici.Msg) error
	LoadKey(ctx context.Context, typ string, data []byte) (string, error)
	LoadShared(ctx context.Context, s vici.SharedSecret) error
	Rekey(ctx context.Context, o vici.RekeyOpts) error
	Stats() map[string]uint64
	Terminate(ctx context.Context, o vici.TerminateOpts) error
	UnloadConn(ctx context.Context, name string) error
	UnloadShared(ctx context.Context, id string) error
	Version(ctx context.Context) (vici.Version, error)
	Watch(ctx context.Context) <-chan vici.Event
}

var (
	_ charonAPI = (*vici.Client)(nil)
	_ charonAPI = (*vicitest.Charon)(nil)
)

func TestMethodSets(t *testing.T) {
	api := reflect.TypeFor[charonAPI]()
	client := reflect.TypeFor[*vici.Client]()
	if client.NumMethod() != api.NumMethod() {
		var names []string
		for m := range client.Methods() {
			names = append(names, m.Name)
		}
		t.Fatalf("*vici.Client has methods %v; charonAPI (and Charon) must list all %d", names, client.NumMethod())
	}
}

func TestCharonState(t *testing.T) {
	ctx := t.Context()
	c := vicitest.New()
	conn := vici.NewMsg()
	children := vici.NewMsg()
	children.Set("c1", vici.NewMsg())
	conn.Set("children", children)
	if err := c.LoadConn(ctx, "b", conn); err != nil {
		t.Fatal(err)
	}
	if err := c.LoadConn(ctx, "a", vici.NewMsg()); err != nil {
		t.Fatal(err)
	}
	if err := c.LoadConn(ctx, "b", conn); err != nil { // replaces, keeps order
		t.Fatal(err)
	}
	conn.Set("mutated", "after load") // the fake keeps a copy
	names, _ := c.GetConns(ctx)
	if !slices.Equal(names, []string{"b", "a"}) {
		t.Errorf("GetConns = %v", names)
	}
	if c.Conns()["b"].Get("mutated") != nil {
		t.Error("LoadConn kept the caller's message")
	}
	list, _ := c.ListConns(ctx)
	if len(list) != 2 || list[0].Name != "b" {
		t.Errorf("ListConns = %+v", list)
	}
	err := c.UnloadConn(ctx, "nope")
	if !errors.Is(err, vici.ErrCommandFailed) || err.Error() != "vici: unload-conn failed: unload: connection 'nope' not found" {
		t.Errorf("UnloadConn(nope) = %v", err)
	}
	if err := c.UnloadConn(ctx, "a"); err != nil {
		t.Fatal(err)
	}

	if err := c.Initiate(ctx, vici.InitiateOpts{Child: "c1"}); err != nil {
		t.Errorf("Initiate(c1): %v", err)
	}
	if err := c.Initiate(ctx, vici.InitiateOpts{Child: "c2"}); !errors.Is(err, vici.ErrCommandFailed) {
		t.Errorf("Initiate(c2) = %v", err)
	}

	id, err := c.LoadKey(ctx, "ed25519", []byte("key"))
	if err != nil || len(id) != 40 || c.Keys()[id].String("data") != "key" {
		t.Errorf("LoadKey = %q, %v", id, err)
	}
	s := vici.SharedSecret{ID: "anon", Type: "IKE", Data: []byte("secret")}
	_ = c.LoadShared(ctx, s)
	if got := c.Shared()["anon"]; !bytes.Equal(got.Data, s.Data) {
		t.Errorf("Shared = %+v", got)
	}
	if err := c.UnloadShared(ctx, "anon"); err != nil || len(c.Shared()) != 0 {
		t.Errorf("UnloadShared: %v", err)
	}
	if err := c.UnloadShared(ctx, "anon"); err != nil { // charon 5.9.8 accepts this
		t.Errorf("UnloadShared again: %v", err)
	}

	ex := vicitest.Examples(t)
	up := ex["child-updown (up)"].(vici.ChildUpDown)
	sa := up.IKE
	other := sa
	other.Name, other.UniqueID, other.Children = "x", 5, nil
	c.SetSAs([]vici.IKESA{sa, other})
	sas, _ := c.ListSAs(ctx, vici.ListSAsFilter{IKE: "rk"})
	if len(sas) != 1 || sas[0].UniqueID != 1 || len(sas[0].Children) != 1 {
		t.Errorf("ListSAs(rk) = %+v", sas)
	}
	sas[0].Children[0].LocalTS[0].Proto = 99 // copies
	if c.SAs()[0].Children[0].LocalTS[0].Proto == 99 {
		t.Error("ListSAs returned shared slices")
	}
	if sas, _ := c.ListSAs(ctx, vici.ListSAsFilter{IKEID: 5}); len(sas) != 1 || sas[0].Name != "x" {
		t.Errorf("ListSAs(5) = %+v", sas)
	}
	if err := c.Rekey(ctx, vici.RekeyOpts{ChildID: 1}); err != nil {
		t.Errorf("Rekey: %v", err)
	}
	if err := c.Rekey(ctx, vici.RekeyOpts{ChildID: 7}); !errors.Is(err, vici.ErrCommandFailed) {
		t.Errorf("Rekey(7) = %v", err)
	}
	if err := c.Terminate(ctx, vici.TerminateOpts{Child: "rk"}); err != nil {
		t.Errorf("Terminate(child rk): %v", err)
	}
	if got := c.SAs(); len(got) != 2 || len(got[0].Children) != 0 {
		t.Errorf("after child terminate: %+v", got)
	}
	if err := c.Terminate(ctx, vici.TerminateOpts{IKEID: 5}); err != nil || len(c.SAs()) != 1 {
		t.Errorf("Terminate(ike 5): %v, %d SAs left", err, len(c.SAs()))
	}
	err = c.Terminate(ctx, vici.TerminateOpts{IKE: "nope"})
	if err == nil || err.Error() != "vici: terminate failed: no matching SAs to terminate found" {
		t.Errorf("Terminate(nope) = %v", err)
	}
	v, _ := c.Version(ctx)
	if v.Version != "5.9.8" {
		t.Errorf("Version = %+v", v)
	}
}

func TestCharonCallsAndFailures(t *testing.T) {
	ctx := t.Context()
	c := vicitest.New()
	c.FailNext("list-sas", syscall.ECONNREFUSED)
	c.FailNext("list-sas", vicitest.Refusal("list-sas", "boom"))
	if _, err := c.ListSAs(ctx, vici.ListSAsFilter{IKE: "x"}); !vici.Unavailable(err) {
		t.Errorf("first ListSAs: %v", err)
	}
	if _, err := c.ListSAs(ctx, vici.ListSAsFilter{}); !errors.Is(err, vici.ErrCommandFailed) {
		t.Errorf("second ListSAs: %v", err)
	}
	if _, err := c.ListSAs(ctx, vici.ListSAsFilter{}); err != nil {
		t.Errorf("third ListSAs: %v", err)
	}
	c.HandleCall(func(cmd string, in *vici.Msg) (*vici.Msg, error) {
		out := vici.NewMsg()
		out.Set("echo", cmd+":"+in.String("k"))
		return out, nil
	})
	in := vici.NewMsg()
	in.Set("k", "v")
	if out, err := c.Call(ctx, "stats", in); err != nil || out.String("echo") != "stats:v" {
		t.Errorf("Call = %v, %v", out, err)
	}
	psk := vici.SharedSecret{ID: "p", Type: "IKE", Data: []byte("s"), Owners: []string{"o"}}
	_ = c.LoadShared(ctx, psk)

	calls := c.Calls()
	want := []string{"list-sas", "list-sas", "list-sas", "stats", "load-shared"}
	var got []string
	for _, call := range calls {
		got = append(got, call.Command)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
	if calls[0].Args.String("ike") != "x" || !calls[4].Args.Equal(psk.Msg()) {
		t.Errorf("args: %s / %s", calls[0].Args.Format(), calls[4].Args.Format())
	}
	if s := c.Stats(); s["list-sas"] != 3 || s["load-shared"] != 1 {
		t.Errorf("Stats = %v", s)
	}
	c.ResetCalls()
	if len(c.Calls()) != 0 || len(c.Stats()) != 0 {
		t.Error("ResetCalls kept calls")
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.LoadConn(cctx, "x", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v", err)
	}
	c.Close()
	if _, err := c.Version(ctx); err == nil {
		t.Error("call after Close succeeded")
	}
}

func TestCharonEvents(t *testing.T) {
	c := vicitest.New()
	ex := vicitest.Examples(t)
	ctx, cancel := context.WithCancel(t.Context())
	w := c.Watch(ctx)
	if r, ok := (<-w).(vici.Resync); !ok || r.Reason != vici.ReasonConnected {
		t.Fatalf("first Watch event %+v", r)
	}
	events := c.Events()
	c.Emit(ex["ike-updown (up)"])
	c.Emit(ex["child-updown (up)"])
	for _, ch := range []<-chan vici.Event{w, events} {
		if _, ok := (<-ch).(vici.IKEUpDown); !ok {
			t.Error("want IKEUpDown first")
		}
		if _, ok := (<-ch).(vici.ChildUpDown); !ok {
			t.Error("want ChildUpDown second")
		}
	}
	c.Restart()
	if r, ok := (<-w).(vici.Resync); !ok || r.Reason != vici.ReasonReconnected {
		t.Errorf("after Restart: %+v", r)
	}
	<-events
	cancel()
	for range w { // drains, then ends: closed
	}
	done := make(chan struct{})
	go func() { c.Emit(vici.Resync{}); close(done) }() // Events has room; w is gone
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Emit blocked on a cancelled Watch")
	}
}

func TestExamples(t *testing.T) {
	ex := vicitest.Examples(t)
	raw := vicitest.RawExamples(t)
	if len(ex) != len(raw) || len(ex) < 9 {
		t.Fatalf("%d examples, %d raw", len(ex), len(raw))
	}
	r := ex["ike-rekey"].(vici.IKERekey)
	if r.Old.UniqueID != 1 || r.New.UniqueID != 2 || r.Time.Hour() != 10 || r.Time.Minute() != 42 {
		t.Errorf("ike-rekey = %+v", r)
	}
	if raw["log"].Event != "log" || raw["log"].Message.String("group") != "NET" {
		t.Errorf("raw log = %+v", raw["log"])
	}
	// The embedded copy is the one vici's own tests use.
	a, err := os.ReadFile("testdata/events-examples.json")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../testdata/events-examples.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("vici/testdata and vici/vicitest/testdata copies of events-examples.json differ")
	}
}
