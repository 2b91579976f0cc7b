// Package vici is btnsd's typed layer over charon's VICI protocol, built on
// govici. It is the only package of btnsd that imports govici.
//
// It offers four things:
//
//   - Msg, an ordered message tree that the rest of btnsd uses to build and
//     inspect VICI messages without knowing the wire format;
//   - typed SAs (IKESA, ChildSA, TrafficSelector) and events (Event),
//     decoded from a Msg, so that live messages and recorded fixtures go
//     through the same code;
//   - a command Client with a deadline on every call and typed errors that
//     carry charon's errmsg;
//   - Watch, an event stream of typed SA events that survives charon
//     restarts and tells its consumer when it must resynchronise from
//     list-sas.
//
// The fake charon for tests of the packages above is vicitest.Charon.
//
// # Commands
//
// A Client holds one VICI session, dialled on the first call and again on
// the call after any failure (charon may have restarted):
//
//	c := vici.New("/var/run/charon.vici", vici.WithLogf(logf))
//	defer c.Close()
//	if err := c.LoadConn(ctx, "btns-peer1", conn); err != nil {
//		if vici.Unavailable(err) { /* charon down: retry later */ }
//		var ce *vici.CommandError // charon refused: ce.Errmsg says why
//	}
//
// Errors: charon's refusals are *CommandError and match ErrCommandFailed;
// connection failures wrap the system error (errors.Is(err,
// syscall.ECONNREFUSED) works) and Unavailable reports them; deadlines
// give context.DeadlineExceeded.
//
// # Events
//
// Events are lossy: charon does not replay them, govici drops them when its
// buffer is full, and none arrive while charon is down. Watch therefore
// delivers a Resync first after every (re)connection and after a possible
// loss, and the consumer's loop is:
//
//	for ev := range vici.Watch(ctx, sock) {
//		switch ev := ev.(type) {
//		case vici.Resync:
//			sas, err := c.ListSAs(ctx, vici.ListSAsFilter{}) // the truth
//			...
//		case vici.ChildUpDown:
//			...
//		}
//	}
//
// Watch uses a session of its own, never a Client's: a command waiting for
// its answer must not share a connection with a stream of events.
//
// # govici workarounds
//
// Between govici and the socket sits a small wrapper (wireConn) that reads
// whole VICI packets. It holds events back while Watch subscribes, because
// govici deadlocks for good when an event arrives during Subscribe; and it
// keeps streamed commands (list-sas, list-conns, initiate, terminate) from
// overflowing govici's internal buffer of 128 packets, which would silently
// drop SAs or even the final response.
//
// # Concurrency
//
// A Client is safe for concurrent use; its calls are serialised. The
// channel of Watch is read by one consumer. Msg values are not safe for
// concurrent mutation; the typed SA and event values are plain data.
package vici
