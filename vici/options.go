package vici

import "time"

// Option configures a Client (New) or an event stream (Watch).
type Option func(*options)

type options struct {
	timeout     time.Duration
	logf        func(format string, args ...any)
	backoffMin  time.Duration
	backoffMax  time.Duration
	eventBuffer int
}

func buildOptions(opts []Option) options {
	o := options{
		timeout:     10 * time.Second,
		logf:        func(string, ...any) {},
		backoffMin:  100 * time.Millisecond,
		backoffMax:  2 * time.Second,
		eventBuffer: 1024,
	}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithTimeout sets the deadline applied to every command (and, for Watch,
// to dialling and subscribing) when the caller's context has no shorter
// one. The default is 10 s. A Call running without a deadline can wedge a
// govici session, so a non-positive d keeps the default.
func WithTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WithLogf sets the function that logs connection losses, reconnections
// and undecodable events. It must be safe for concurrent use. The default
// discards everything; tests can pass t.Logf.
func WithLogf(logf func(format string, args ...any)) Option {
	return func(o *options) {
		if logf != nil {
			o.logf = logf
		}
	}
}

// WithBackoff sets how long Watch waits before reconnecting to charon: min
// at first, doubling up to max. The default is 100 ms to 2 s.
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) {
		if min > 0 {
			o.backoffMin = min
		}
		if max >= o.backoffMin {
			o.backoffMax = max
		} else {
			o.backoffMax = o.backoffMin
		}
	}
}

// WithEventBuffer sets the size of the buffer between govici and Watch
// (default 1024). govici discards events when it is full, and Watch then
// delivers a Resync.
func WithEventBuffer(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.eventBuffer = n
		}
	}
}
