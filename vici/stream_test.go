package vici

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// subscriber returns a live connection subscribed to every watched event.
func (f *fakeCharon) subscriber(t *testing.T) *fakeConn {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for fc := range f.conns {
		all := true
		for _, e := range watchedEvents {
			all = all && fc.subscribed(e)
		}
		if all {
			return fc
		}
	}
	t.Fatal("no connection subscribed to all events")
	return nil
}

func next(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("event channel closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return nil
}

func wantResync(t *testing.T, ch <-chan Event, reason string) {
	t.Helper()
	ev := next(t, ch)
	r, ok := ev.(Resync)
	if !ok || r.Reason != reason || r.Time.IsZero() {
		t.Fatalf("got %T %+v, want Resync(%q)", ev, ev, reason)
	}
}

func wantNothing(t *testing.T, ch <-chan Event, d time.Duration) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		t.Fatalf("unexpected %T %+v (open %v)", ev, ev, ok)
	case <-time.After(d):
	}
}

func wantClosed(t *testing.T, ch <-chan Event) {
	t.Helper()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatal("event channel not closed")
		}
	}
}

func TestWatch(t *testing.T) {
	checkLeaks(t)
	fx := loadFixture(t)
	f := newFakeCharon(t)
	f.stop() // charon is not running yet
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := Watch(ctx, f.path, WithBackoff(time.Millisecond, 20*time.Millisecond), WithLogf(t.Logf))
	wantNothing(t, ch, 50*time.Millisecond)
	f.start()
	wantResync(t, ch, ReasonConnected)

	fc := f.subscriber(t)
	order := []string{
		"ike-update (IKE_SA_INIT NAT-T float)", "ike-updown (up)", "child-updown (up)",
		"ike-update (MOBIKE)", "child-rekey", "ike-rekey", "child-updown (down)", "ike-updown (down)",
	}
	for i, name := range order {
		if i == 3 { // an undecodable event in the middle is skipped
			if err := fc.emit("ike-updown", msgOf("rk", msgOf("uniqueid", "bogus"))); err != nil {
				t.Fatal(err)
			}
		}
		if err := fc.emit(fx[name].Event, fx[name].Message); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range order {
		ev := next(t, ch)
		want, err := DecodeEvent(fx[name].Event, fx[name].Message, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if typeName(ev) != typeName(want) {
			t.Fatalf("%s: got %T, want %T", name, ev, want)
		}
		if ev.EventTime().IsZero() {
			t.Errorf("%s: no receive time", name)
		}
	}
	// The fixture's remote-id survives the trip.
	wantNothing(t, ch, 20*time.Millisecond)

	// charon restarts: nothing until reconnected, then Resync first.
	f.stop()
	wantNothing(t, ch, 50*time.Millisecond)
	f.start()
	wantResync(t, ch, ReasonReconnected)
	fc = f.subscriber(t)
	if err := fc.emit("ike-updown", fx["ike-updown (up)"].Message); err != nil {
		t.Fatal(err)
	}
	if ev, ok := next(t, ch).(IKEUpDown); !ok || !ev.Up || ev.IKE.RemoteID != fxRemoteID {
		t.Fatalf("after reconnect: %+v", ev)
	}
	// The connection drops without the listener going away.
	f.dropConns()
	wantResync(t, ch, ReasonReconnected)

	cancel()
	wantClosed(t, ch)
}

func typeName(ev Event) string {
	switch ev.(type) {
	case IKEUpDown:
		return "IKEUpDown"
	case ChildUpDown:
		return "ChildUpDown"
	case IKERekey:
		return "IKERekey"
	case ChildRekey:
		return "ChildRekey"
	case IKEUpdate:
		return "IKEUpdate"
	case Resync:
		return "Resync"
	case Log:
		return "Log"
	}
	return "?"
}

func TestWatchEventDuringSubscribe(t *testing.T) {
	// govici deadlocks when an event arrives while Subscribe waits for a
	// confirmation; the wire wrapper holds such events back.
	checkLeaks(t)
	fx := loadFixture(t)
	f := newFakeCharon(t)
	f.onRegister = func(fc *fakeConn, event string) {
		if event == "child-updown" { // ike-updown is registered already
			if err := fc.emit("ike-updown", fx["ike-updown (up)"].Message); err != nil {
				t.Error(err)
			}
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := Watch(ctx, f.path, WithTimeout(3*time.Second), WithLogf(t.Logf))
	wantResync(t, ch, ReasonConnected)
	if ev, ok := next(t, ch).(IKEUpDown); !ok || ev.IKE.UniqueID != 1 {
		t.Fatalf("got %+v", ev)
	}
	if n := len(f.cmds()); n != 0 {
		t.Errorf("%d commands on the event session", n)
	}
	cancel()
	wantClosed(t, ch)
}

func TestWatchSubscribeTimeout(t *testing.T) {
	checkLeaks(t)
	f := newFakeCharon(t)
	var answered atomic.Bool
	f.onRegister = func(fc *fakeConn, event string) {
		if !answered.Swap(true) {
			time.Sleep(300 * time.Millisecond) // charon does not answer in time
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	start := time.Now()
	ch := Watch(ctx, f.path, WithTimeout(100*time.Millisecond), WithBackoff(time.Millisecond, time.Millisecond), WithLogf(t.Logf))
	wantResync(t, ch, ReasonConnected)
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("connected after %v, before the first attempt timed out", d)
	}
	cancel()
	wantClosed(t, ch)
}

func TestWatchDroppedEvents(t *testing.T) {
	checkLeaks(t)
	f := newFakeCharon(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := Watch(ctx, f.path, WithEventBuffer(4), WithLogf(t.Logf))
	wantResync(t, ch, ReasonConnected)
	fc := f.subscriber(t)
	// Nobody reads: Watch holds event 1, govici's buffer takes 2..5 and
	// discards the rest.
	for i := 1; i <= 20; i++ {
		if err := fc.emit("ike-updown", msgOf("up", "yes", "c", msgOf("uniqueid", strconv.Itoa(i)))); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	for i := 1; i <= 5; i++ {
		ev, ok := next(t, ch).(IKEUpDown)
		if !ok || ev.IKE.UniqueID != uint64(i) {
			t.Fatalf("event %d: got %+v", i, ev)
		}
	}
	wantResync(t, ch, ReasonDropped)
	wantNothing(t, ch, 50*time.Millisecond)
	// Later events flow normally.
	if err := fc.emit("ike-updown", msgOf("c", msgOf("uniqueid", "99"))); err != nil {
		t.Fatal(err)
	}
	if ev, ok := next(t, ch).(IKEUpDown); !ok || ev.IKE.UniqueID != 99 || ev.Up {
		t.Fatalf("got %+v", ev)
	}
	cancel()
	wantClosed(t, ch)
}

func TestWatchCancelWhileDown(t *testing.T) {
	checkLeaks(t)
	f := newFakeCharon(t)
	f.stop()
	ctx, cancel := context.WithCancel(t.Context())
	ch := Watch(ctx, f.path, WithBackoff(time.Millisecond, 5*time.Millisecond))
	wantNothing(t, ch, 30*time.Millisecond)
	cancel()
	wantClosed(t, ch)
}

func TestClientWatch(t *testing.T) {
	checkLeaks(t)
	f := newFakeCharon(t)
	c := New(f.path)
	defer c.Close()
	ctx, cancel := context.WithCancel(t.Context())
	ch := c.Watch(ctx)
	wantResync(t, ch, ReasonConnected)
	if _, err := c.Version(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.numConns(); n != 2 {
		t.Errorf("%d connections, want 2 (events and commands apart)", n)
	}
	cancel()
	wantClosed(t, ch)
}
