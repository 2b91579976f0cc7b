package vici

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

func listSAMsg(name string, id int) *Msg {
	child := msgOf("name", name, "uniqueid", strconv.Itoa(id), "reqid", "1", "state", "INSTALLED",
		"spi-in", "c0000001", "local-ts", []string{"10.99.0.1/32"}, "remote-ts", []string{"10.99.0.2/32"})
	ike := msgOf("uniqueid", strconv.Itoa(id), "version", "2", "state", "ESTABLISHED",
		"remote-host", "10.99.0.2", "remote-port", "4500", "remote-id", "peer",
		"child-sas", msgOf(fmt.Sprintf("%s-%d", name, id), child))
	return msgOf(name, ike)
}

func TestClientCommands(t *testing.T) {
	checkLeaks(t)
	f := newFakeCharon(t)
	f.handle = func(fc *fakeConn, cmd string, in *Msg) reply {
		ok := msgOf("success", "yes")
		switch cmd {
		case "version":
			return reply{resp: msgOf("daemon", "charon", "version", "5.9.8", "sysname", "Linux", "release", "6.18", "machine", "x86_64")}
		case "unload-conn":
			return reply{resp: msgOf("success", "no", "errmsg", "unload: connection '"+in.String("name")+"' not found")}
		case "get-conns":
			return reply{resp: msgOf("conns", []string{"a", "b"})}
		case "list-conns":
			return reply{events: []streamed{
				{"list-conn", msgOf("a", msgOf("version", "IKEv2"))},
				{"list-conn", msgOf("b", msgOf("version", "0"))},
			}, resp: NewMsg()}
		case "load-key":
			return reply{resp: msgOf("success", "yes", "id", "0123abcd")}
		case "list-sas":
			return reply{events: []streamed{
				{"list-sa", listSAMsg("a", 1)},
				{"list-sa", listSAMsg("b", 2)},
			}, resp: NewMsg()}
		case "initiate":
			if in.String("child") == "bad" {
				return reply{events: []streamed{
					{"control-log", msgOf("group", "IKE", "level", "1", "msg", "initiating IKE_SA bad[3]")},
					{"control-log", msgOf("group", "IKE", "level", "1", "msg", "giving up after 0 retransmits")},
				}, resp: msgOf("success", "no", "errmsg", "establishing CHILD_SA 'bad' failed")}
			}
			return reply{events: []streamed{{"control-log", msgOf("msg", "ok")}}, resp: ok}
		case "terminate":
			return reply{resp: msgOf("success", "yes", "matches", "1", "terminated", "1")}
		case "rekey":
			return reply{resp: msgOf("success", "yes", "matches", "1")}
		}
		return reply{resp: ok}
	}
	c := New(f.path, WithLogf(t.Logf))
	defer c.Close()
	ctx := t.Context()

	v, err := c.Version(ctx)
	if err != nil || v != (Version{"charon", "5.9.8", "Linux", "6.18", "x86_64"}) {
		t.Fatalf("Version = %+v, %v", v, err)
	}

	conn := msgOf("remote_addrs", []string{"%any"}, "children", msgOf("c", msgOf("mode", "tunnel")))
	if err := c.LoadConn(ctx, "btns-x", conn); err != nil {
		t.Fatal(err)
	}
	if got := f.lastRequest("load-conn"); !got.Equal(LoadConnMsg("btns-x", conn)) {
		t.Errorf("load-conn sent:\n%s", got.Format())
	}

	err = c.UnloadConn(ctx, "nope")
	var ce *CommandError
	if !errors.Is(err, ErrCommandFailed) || !errors.As(err, &ce) || ce.Command != "unload-conn" ||
		ce.Errmsg != "unload: connection 'nope' not found" || Unavailable(err) {
		t.Errorf("UnloadConn err = %v (%#v)", err, ce)
	}

	names, err := c.GetConns(ctx)
	if err != nil || !reflect.DeepEqual(names, []string{"a", "b"}) {
		t.Errorf("GetConns = %v, %v", names, err)
	}
	conns, err := c.ListConns(ctx)
	if err != nil || len(conns) != 2 || conns[1].Name != "b" || conns[0].Body.String("version") != "IKEv2" {
		t.Errorf("ListConns = %+v, %v", conns, err)
	}

	id, err := c.LoadKey(ctx, "ed25519", []byte("\x30\x2e\x02\x01"))
	if err != nil || id != "0123abcd" {
		t.Errorf("LoadKey = %q, %v", id, err)
	}
	if got := f.lastRequest("load-key"); got.String("type") != "ed25519" || got.String("data") != "\x30\x2e\x02\x01" {
		t.Errorf("load-key sent:\n%s", got.Format())
	}

	psk := SharedSecret{ID: "btns-anon", Type: "IKE", Data: []byte("0123456789abcdef0123456789abcdef")}
	if err := c.LoadShared(ctx, psk); err != nil {
		t.Fatal(err)
	}
	got := f.lastRequest("load-shared")
	if !got.Equal(msgOf("id", "btns-anon", "type", "IKE", "data", "0123456789abcdef0123456789abcdef")) {
		t.Errorf("load-shared sent:\n%s", got.Format())
	}
	psk.Owners = []string{"a", "b"}
	_ = c.LoadShared(ctx, psk)
	if o := f.lastRequest("load-shared").List("owners"); !reflect.DeepEqual(o, []string{"a", "b"}) {
		t.Errorf("owners sent: %v", o)
	}
	if err := c.UnloadShared(ctx, "btns-anon"); err != nil || f.lastRequest("unload-shared").String("id") != "btns-anon" {
		t.Errorf("UnloadShared: %v", err)
	}

	sas, err := c.ListSAs(ctx, ListSAsFilter{IKE: "a", IKEID: 7, NoBlock: true})
	if err != nil || len(sas) != 2 || sas[0].Name != "a" || sas[1].UniqueID != 2 ||
		len(sas[1].Children) != 1 || sas[1].Children[0].Key != "b-2" || sas[1].RemotePort != 4500 {
		t.Errorf("ListSAs = %+v, %v", sas, err)
	}
	if got := f.lastRequest("list-sas"); !got.Equal(msgOf("noblock", "yes", "ike", "a", "ike-id", "7")) {
		t.Errorf("list-sas sent:\n%s", got.Format())
	}

	if err := c.Initiate(ctx, InitiateOpts{Child: "good", IKE: "conn", Timeout: 1500 * time.Millisecond}); err != nil {
		t.Errorf("Initiate: %v", err)
	}
	if got := f.lastRequest("initiate"); !got.Equal(msgOf("child", "good", "ike", "conn", "timeout", "1500")) {
		t.Errorf("initiate sent:\n%s", got.Format())
	}
	err = c.Initiate(ctx, InitiateOpts{Child: "bad"})
	if !errors.As(err, &ce) || ce.Errmsg != "establishing CHILD_SA 'bad' failed" ||
		!reflect.DeepEqual(ce.Log, []string{"initiating IKE_SA bad[3]", "giving up after 0 retransmits"}) {
		t.Errorf("Initiate(bad) = %v", err)
	}
	if s := err.Error(); s != "vici: initiate failed: establishing CHILD_SA 'bad' failed (charon log: initiating IKE_SA bad[3]; giving up after 0 retransmits)" {
		t.Errorf("error text %q", s)
	}

	if err := c.Terminate(ctx, TerminateOpts{IKEID: 3, Force: true, Timeout: -1}); err != nil {
		t.Errorf("Terminate: %v", err)
	}
	if got := f.lastRequest("terminate"); !got.Equal(msgOf("ike-id", "3", "force", "yes", "timeout", "-1")) {
		t.Errorf("terminate sent:\n%s", got.Format())
	}
	if err := c.Rekey(ctx, RekeyOpts{Child: "c", ChildID: 9, IKE: "x", Reauth: true}); err != nil {
		t.Errorf("Rekey: %v", err)
	}
	if got := f.lastRequest("rekey"); !got.Equal(msgOf("child", "c", "ike", "x", "child-id", "9", "reauth", "yes")) {
		t.Errorf("rekey sent:\n%s", got.Format())
	}

	want := map[string]uint64{"version": 1, "load-conn": 1, "unload-conn": 1, "get-conns": 1, "list-conns": 1,
		"load-key": 1, "load-shared": 2, "unload-shared": 1, "list-sas": 1, "initiate": 2, "terminate": 1, "rekey": 1}
	if s := c.Stats(); !reflect.DeepEqual(s, want) {
		t.Errorf("Stats = %v, want %v", s, want)
	}
	if n := f.numConns(); n != 1 {
		t.Errorf("%d connections, want 1 (a refused command keeps the session)", n)
	}
}

func TestClientUnknownCommand(t *testing.T) {
	f := newFakeCharon(t)
	f.handle = func(*fakeConn, string, *Msg) reply { return reply{} } // CMD_UNKNOWN
	c := New(f.path)
	defer c.Close()
	_, err := c.Call(t.Context(), "no-such-command", nil)
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Errmsg != "unknown command" {
		t.Fatalf("err = %v", err)
	}
	f.handle = nil
	if _, err := c.Call(t.Context(), "version", nil); err != nil {
		t.Fatal(err)
	}
	if got := len(f.cmds()); got != 2 || f.numConns() != 1 {
		t.Errorf("%d commands over %d connections, want 2 over 1", got, f.numConns())
	}
}

func TestClientRedial(t *testing.T) {
	checkLeaks(t)
	f := newFakeCharon(t)
	var logs []string
	var logMu sync.Mutex
	c := New(f.path, WithTimeout(2*time.Second), WithLogf(func(format string, args ...any) {
		logMu.Lock()
		logs = append(logs, fmt.Sprintf(format, args...))
		logMu.Unlock()
	}))
	defer c.Close()
	ctx := t.Context()
	if _, err := c.Version(ctx); err != nil {
		t.Fatal(err)
	}

	// charon restarts: the next call fails (broken connection), the one
	// after dials again.
	f.dropConns()
	_, err := c.Version(ctx)
	if err == nil || !Unavailable(err) || errors.Is(err, ErrCommandFailed) {
		t.Fatalf("call on a dropped connection: %v (Unavailable %v)", err, Unavailable(err))
	}
	if _, err := c.Version(ctx); err != nil {
		t.Fatalf("call after redial: %v", err)
	}

	// charon is down, its socket left behind: ECONNREFUSED.
	f.stop()
	_, err = c.Version(ctx) // breaks the live session
	if !Unavailable(err) {
		t.Fatalf("err = %v, want unavailable", err)
	}
	_, err = c.Version(ctx)
	if !errors.Is(err, syscall.ECONNREFUSED) || !Unavailable(err) {
		t.Fatalf("err = %v, want ECONNREFUSED", err)
	}
	// No socket at all: ENOENT, also unavailable.
	c2 := New(f.path + ".missing")
	_, err = c2.Version(ctx)
	if !errors.Is(err, syscall.ENOENT) || !Unavailable(err) {
		t.Fatalf("err = %v, want ENOENT", err)
	}

	f.start()
	if _, err := c.Version(ctx); err != nil {
		t.Fatalf("after charon came back: %v", err)
	}
	logMu.Lock()
	if len(logs) == 0 {
		t.Error("nothing logged about the lost connection")
	}
	logMu.Unlock()

	c.Close()
	if _, err := c.Version(ctx); !errors.Is(err, net.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestClientTimeout(t *testing.T) {
	checkLeaks(t)
	f := newFakeCharon(t)
	f.handle = func(_ *fakeConn, cmd string, _ *Msg) reply {
		if cmd == "hang" {
			return reply{hang: true}
		}
		return reply{resp: NewMsg()}
	}
	c := New(f.path, WithTimeout(100*time.Millisecond))
	defer c.Close()
	start := time.Now()
	_, err := c.Call(t.Context(), "hang", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
	// A caller's shorter deadline wins.
	c2 := New(f.path, WithTimeout(time.Minute))
	defer c2.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := c2.Call(ctx, "hang", nil); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("err = %v after %v", err, time.Since(start))
	}
	// The session was dropped; the next call works on a new one.
	if _, err := c.Call(t.Context(), "version", nil); err != nil {
		t.Fatal(err)
	}
}

func TestClientConcurrent(t *testing.T) {
	f := newFakeCharon(t)
	f.handle = func(_ *fakeConn, cmd string, in *Msg) reply { return reply{resp: in} }
	c := New(f.path)
	defer c.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				in := msgOf("g", strconv.Itoa(g), "i", strconv.Itoa(i))
				out, err := c.Call(t.Context(), "echo", in)
				if err != nil || !out.Equal(in) {
					t.Errorf("echo %d/%d: %v %v", g, i, out, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if s := c.Stats()["echo"]; s != 400 {
		t.Errorf("Stats = %d, want 400", s)
	}
}

func TestListSAsLongStreamNoDrops(t *testing.T) {
	// govici keeps streamed events in a buffer of 128 and discards what
	// does not fit; the wire wrapper holds the socket back instead.
	checkLeaks(t)
	const n = 1000
	f := newFakeCharon(t)
	f.handle = func(_ *fakeConn, cmd string, _ *Msg) reply {
		var ev []streamed
		for i := range n {
			ev = append(ev, streamed{"list-sa", listSAMsg("c"+strconv.Itoa(i), i+1)})
		}
		return reply{events: ev, resp: NewMsg()}
	}
	c := New(f.path)
	defer c.Close()
	calls := 0
	c.streamHook = func() {
		calls++
		if calls < 20 {
			time.Sleep(5 * time.Millisecond) // a slow consumer at first
		}
	}
	sas, err := c.ListSAs(t.Context(), ListSAsFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sas) != n {
		t.Fatalf("got %d SAs, want %d", len(sas), n)
	}
	for i, sa := range sas {
		if sa.UniqueID != uint64(i+1) {
			t.Fatalf("SA %d has uniqueid %d: out of order", i, sa.UniqueID)
		}
	}
	if s := c.Stats()["list-sas"]; s != 1 {
		t.Errorf("list-sas sent %d times", s)
	}
}

func TestListSAsDecodeError(t *testing.T) {
	f := newFakeCharon(t)
	f.handle = func(_ *fakeConn, cmd string, _ *Msg) reply {
		return reply{events: []streamed{
			{"list-sa", msgOf("a", msgOf("uniqueid", "zz"))},
			{"list-sa", listSAMsg("b", 2)},
		}, resp: NewMsg()}
	}
	c := New(f.path)
	defer c.Close()
	_, err := c.ListSAs(t.Context(), ListSAsFilter{})
	if err == nil || !errors.Is(err, errDecode) || Unavailable(err) {
		t.Fatalf("err = %v", err)
	}
	// The stream was consumed: the session is still in step.
	f.handle = nil
	if _, err := c.Call(t.Context(), "version", nil); err != nil || f.numConns() != 1 {
		t.Fatalf("after a decode error: %v, %d connections", err, f.numConns())
	}
}

func TestClientQueuedCallExpires(t *testing.T) {
	f := newFakeCharon(t)
	release := make(chan struct{})
	f.handle = func(_ *fakeConn, cmd string, _ *Msg) reply {
		if cmd == "slow" {
			<-release
		}
		return reply{resp: NewMsg()}
	}
	c := New(f.path)
	defer c.Close()
	done := make(chan error)
	go func() { _, err := c.Call(t.Context(), "slow", nil); done <- err }()
	for len(f.cmds()) == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	go func() { time.Sleep(50 * time.Millisecond); close(release) }()
	if _, err := c.Call(ctx, "version", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("queued call: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(t.Context(), "version", nil); err != nil || f.numConns() != 1 {
		t.Errorf("after: %v, %d connections (the session must survive)", err, f.numConns())
	}
}
