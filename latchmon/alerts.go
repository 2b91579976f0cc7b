package latchmon

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/btnsd/btnsd/latchmon/latch"
	"github.com/btnsd/btnsd/latchmon/sockets"
)

// subscriber is one reader of the alert bus.
type subscriber struct {
	ch     chan latch.Alert
	closed bool
}

// Subscribe returns a channel that receives every Alert from now on (RFC
// 5660 2.3 ALERT: every transition of every latch), in order, and a
// function that ends the subscription and closes the channel. A subscriber
// whose buffer is full is dropped, its channel closed, so that no reader
// ever holds the monitor up: it should subscribe again and re-read the
// latches (Latches) to learn what it missed.
func (m *Monitor) Subscribe() (<-chan latch.Alert, func()) {
	s := &subscriber{ch: make(chan latch.Alert, m.subBuf)}
	m.mu.Lock()
	m.subs[s] = struct{}{}
	m.mu.Unlock()
	return s.ch, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.dropLocked(s)
	}
}

func (m *Monitor) dropLocked(s *subscriber) {
	if !s.closed {
		s.closed = true
		close(s.ch)
		delete(m.subs, s)
	}
}

// publishLocked logs an Alert and hands it to every subscriber.
func (m *Monitor) publishLocked(a latch.Alert) {
	line := fmt.Sprintf("latch %d %s: %s -> %s: %s", a.LatchID, tupleText(a.Tuple), a.From, a.To, a.Reason)
	if a.Listener != 0 {
		line += fmt.Sprintf(" (from listener latch %d)", a.Listener)
	}
	m.logf("%s", line)
	for s := range m.subs {
		select {
		case s.ch <- a:
		default:
			m.dropLocked(s)
			m.logf("alert subscriber dropped: it fell %d alerts behind", cap(s.ch))
		}
	}
}

// tupleText formats a flow as "tcp 10.0.0.1:5001 <-> 10.0.0.2:40000", a
// listening endpoint as "tcp 10.0.0.1:5001".
func tupleText(t latch.Tuple) string {
	proto, _, _ := strings.Cut(t.String(), " ")
	if !t.Remote.IsValid() {
		return proto + " " + t.Local.String()
	}
	return proto + " " + t.Local.String() + " <-> " + t.Remote.String()
}

// resetJob is a Reset to carry out, with the time of the event that caused
// it.
type resetJob struct {
	r     latch.Reset
	s     sockets.Socket
	cause time.Time
}

// doResets destroys the sockets of broken (disposition reset, RFC 5660
// 5.5 (b)) or administratively closed (2.3) latches, by cookie, so that a
// newer socket on the same tuple is never hit. Called without m.mu: a
// destroy is a netlink round trip.
func (m *Monitor) doResets(jobs []resetJob) {
	for _, j := range jobs {
		err := m.src.Destroy(j.s)
		took := m.now().Sub(j.cause)
		what := fmt.Sprintf("latch %d %s: reset", j.r.LatchID, tupleText(j.r.Tuple))
		switch {
		case err == nil:
			m.logf("%s: socket cookie %#x destroyed, %v after the event", what, j.r.Cookie, took)
		case errors.Is(err, sockets.ErrGone):
			m.logf("%s: socket cookie %#x already gone", what, j.r.Cookie)
		default:
			m.logf("%s: destroying socket cookie %#x failed: %v", what, j.r.Cookie, err)
		}
	}
}
