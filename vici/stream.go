package vici

import (
	"context"
	"errors"
	"fmt"
	"time"

	govici "github.com/strongswan/govici/vici"
)

// Resync reasons, for logs and tests.
const (
	ReasonConnected   = "connected to charon"
	ReasonReconnected = "charon reconnected"
	ReasonDropped     = "events may have been dropped"
)

// Watch streams charon's SA events (ike-updown, child-updown, ike-rekey,
// child-rekey, ike-update) until ctx is done, then closes the channel. It
// runs a goroutine with a VICI session of its own, never a Client's.
//
// The stream is lossy by nature: charon does not replay events, and govici
// discards events when its buffer is full. So the first thing delivered
// after every connection to charon (the first one included) is a Resync,
// and a Resync also follows the last event delivered before a possible
// drop. On Resync the consumer must re-read the state with ListSAs; events
// are delivered in charon's order otherwise.
//
// When charon goes away nothing is delivered until Watch has reconnected
// (with backoff, see WithBackoff) and subscribed again; then a Resync
// ("charon reconnected") comes first. Subscribing is bounded by the
// WithTimeout deadline and retried. Events that cannot be decoded are
// logged (WithLogf) and skipped.
//
// The channel is unbuffered: a slow consumer delays Watch, and the buffer
// in front of Watch (WithEventBuffer) absorbs bursts.
func Watch(ctx context.Context, socketPath string, opts ...Option) <-chan Event {
	w := &watcher{ctx: ctx, path: socketPath, o: buildOptions(opts), out: make(chan Event)}
	go w.run()
	return w.out
}

type watcher struct {
	ctx  context.Context
	path string
	o    options
	out  chan Event
}

func (w *watcher) run() {
	defer close(w.out)
	backoff := w.o.backoffMin
	reason := ReasonConnected
	for {
		sess, evc, err := w.connect()
		if err == nil {
			backoff = w.o.backoffMin
			ok := w.forward(evc, reason)
			_ = sess.Close()
			if !ok {
				return
			}
			reason = ReasonReconnected
			w.o.logf("vici: event stream: charon went away; reconnecting")
		} else {
			if w.ctx.Err() != nil {
				return
			}
			w.o.logf("vici: event stream: %v; retrying in %v", err, backoff)
		}
		if !w.sleep(backoff) {
			return
		}
		backoff = min(2*backoff, w.o.backoffMax)
	}
}

// connect dials charon and subscribes to the events, within the timeout.
func (w *watcher) connect() (*govici.Session, chan govici.Event, error) {
	ctx, cancel := context.WithTimeout(w.ctx, w.o.timeout)
	defer cancel()
	var wire *wireConn
	sess, err := govici.NewSession(govici.WithDialContext(dialWire(ctx, w.path, true, &wire)))
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w", w.path, err)
	}
	evc := make(chan govici.Event, w.o.eventBuffer)
	sess.NotifyEvents(evc)
	done := make(chan error, 1)
	go func() { done <- sess.Subscribe(watchedEvents...) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// Closing the socket ends govici's reader, which ends Subscribe.
		_ = sess.Close()
		select {
		case <-done:
		case <-time.After(time.Second):
			w.o.logf("vici: event stream: Subscribe still blocked after Close")
		}
		if w.ctx.Err() != nil {
			return nil, nil, w.ctx.Err()
		}
		return nil, nil, fmt.Errorf("subscribe: no answer within %v", w.o.timeout)
	}
	if err != nil {
		_ = sess.Close()
		return nil, nil, fmt.Errorf("subscribe: %w", err)
	}
	wire.release()
	return sess, evc, nil
}

// forward delivers a Resync, then the events of evc until govici closes it
// (it returns true) or ctx is done (false).
func (w *watcher) forward(evc <-chan govici.Event, reason string) bool {
	if !w.send(Resync{Time: time.Now(), Reason: reason}) {
		return false
	}
	// When govici's channel is full, the events after those in it may
	// be discarded: deliver the ones in it, then a Resync.
	beforeResync := 0
	for {
		if len(evc) == cap(evc) {
			beforeResync = len(evc)
		}
		var e govici.Event
		select {
		case ge, ok := <-evc:
			if !ok {
				return true
			}
			e = ge
		case <-w.ctx.Done():
			return false
		}
		ev, err := DecodeEvent(e.Name, fromGovici(e.Message), e.Timestamp)
		switch {
		case errors.Is(err, ErrUnknownEvent):
			w.o.logf("vici: event stream: skipping event %q", e.Name)
		case err != nil:
			w.o.logf("vici: event stream: skipping undecodable event: %v", err)
		default:
			if !w.send(ev) {
				return false
			}
		}
		if beforeResync > 0 {
			beforeResync--
			if beforeResync == 0 && !w.send(Resync{Time: time.Now(), Reason: ReasonDropped}) {
				return false
			}
		}
	}
}

func (w *watcher) send(ev Event) bool {
	select {
	case w.out <- ev:
		return true
	case <-w.ctx.Done():
		return false
	}
}

func (w *watcher) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.ctx.Done():
		return false
	}
}
