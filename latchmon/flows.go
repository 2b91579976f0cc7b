package latchmon

import (
	"context"
	"net/netip"

	"github.com/btnsd/btnsd/latchmon/latch"
	"github.com/btnsd/btnsd/latchmon/sockets"
)

// SocketSource is what the monitor needs of the kernel's sockets;
// *sockets.Handle provides it, and HostSockets is the host's (the calling
// process's network namespace). The methods are those of package sockets,
// with the same contracts.
type SocketSource interface {
	// Dump lists every TCP and UDP socket.
	Dump(ctx context.Context) ([]sockets.Socket, error)
	// Destroy aborts one socket, found by tuple and cookie; it returns an
	// error matching sockets.ErrGone when the socket no longer exists.
	Destroy(s sockets.Socket) error
	// Watch reports every socket the kernel frees from now on, and
	// Overflow when it lost some.
	Watch(ctx context.Context) (<-chan sockets.Event, error)
}

type hostSockets struct{}

func (hostSockets) Dump(ctx context.Context) ([]sockets.Socket, error) { return sockets.Dump(ctx) }
func (hostSockets) Destroy(s sockets.Socket) error                     { return sockets.Destroy(s) }
func (hostSockets) Watch(ctx context.Context) (<-chan sockets.Event, error) {
	return sockets.Watch(ctx)
}

// HostSockets is the sockets of the calling process's network namespace
// (the package-level functions of package sockets).
var HostSockets SocketSource = hostSockets{}

var _ SocketSource = (*sockets.Handle)(nil)

// ikePorts are the UDP ports of IKE and of UDP-encapsulated ESP (charon's
// defaults). Their sockets are the key manager's own: RFC 4301 requires IKE
// to bypass IPsec, so no SA ever protects them and latching them would
// only add LISTENER latches that mean nothing.
var ikePorts = [...]uint16{500, 4500}

// live reports whether a socket in a dump is a flow an application holds.
// Skipped: the IKE sockets (ikePorts), TIME-WAIT (which carries the cookie of a socket already reported
// closed), request sockets (SYN-RECV, which an accepted connection replaces
// with a socket of its own cookie), closed TCP sockets, and FIN-WAIT,
// LAST-ACK and CLOSING sockets the application has closed (Inode 0), which
// only finish their exchange.
func live(s *sockets.Socket) bool {
	if s.Proto == sockets.UDP {
		for _, p := range ikePorts {
			if s.Local.Port() == p {
				return false
			}
		}
		return true
	}
	if s.Proto != sockets.TCP {
		return true
	}
	switch s.State {
	case sockets.StateEstablished, sockets.StateSynSent, sockets.StateCloseWait, sockets.StateListen:
		return true
	case sockets.StateFinWait1, sockets.StateFinWait2, sockets.StateLastAck, sockets.StateClosing:
		return s.Inode != 0
	}
	return false
}

func flowOf(s *sockets.Socket) latch.Flow {
	return latch.Flow{
		Tuple:     latch.Tuple{Proto: s.Proto, Local: s.Local, Remote: s.Remote},
		Cookie:    s.Cookie,
		Listening: s.Listening,
	}
}

// sockEntry is a live socket of the last dump.
type sockEntry struct {
	s   sockets.Socket
	gen uint64
}

// sameFlow reports whether two sightings of one cookie are the same flow: a
// UDP socket that connects (or a TCP socket that goes from bound to
// connecting) keeps its cookie and gets another tuple.
func sameFlow(a, b *sockets.Socket) bool {
	return a.Local == b.Local && a.Remote == b.Remote && a.Listening == b.Listening && a.Proto == b.Proto
}

// applyDump takes a dump into the socket table and returns the flow
// events that bring the machine from the previous dump to this one: the
// diff, keyed by cookie, so that an unchanged socket costs one map lookup
// and the machine is stepped only for what changed (RFC 5660 2: a latch
// is born when its flow is, and ends with it). Called with m.mu held.
func (m *Monitor) applyDump(socks []sockets.Socket) (seen, gone []latch.Flow) {
	m.sockGen++
	gen := m.sockGen
	for i := range socks {
		s := &socks[i]
		if !live(s) || s.Cookie == 0 {
			continue
		}
		e := m.socks[s.Cookie]
		switch {
		case e == nil:
			m.socks[s.Cookie] = &sockEntry{s: *s, gen: gen}
			seen = append(seen, flowOf(s))
			continue
		case !sameFlow(&e.s, s):
			gone = append(gone, flowOf(&e.s))
			seen = append(seen, flowOf(s))
		}
		e.s, e.gen = *s, gen
	}
	for c, e := range m.socks {
		if e.gen != gen {
			gone = append(gone, flowOf(&e.s))
			delete(m.socks, c)
		}
	}
	return seen, gone
}

// tableFlows returns every flow of the socket table, for a full Snapshot.
func (m *Monitor) tableFlows() []latch.Flow {
	out := make([]latch.Flow, 0, len(m.socks))
	for _, e := range m.socks {
		out = append(out, flowOf(&e.s))
	}
	return out
}

// closed takes a socket the kernel freed out of the table and returns its
// flow as the table knew it: the kernel may report a freed socket with
// local port 0, so only the cookie is trusted.
func (m *Monitor) closed(cookie uint64) (latch.Flow, bool) {
	e, ok := m.socks[cookie]
	if !ok {
		return latch.Flow{}, false
	}
	delete(m.socks, cookie)
	return flowOf(&e.s), true
}

// socketFor returns the socket to destroy for a Reset: the table's (it has
// the bound device the kernel's lookup needs), or one made from the tuple.
func (m *Monitor) socketFor(r latch.Reset) sockets.Socket {
	if e, ok := m.socks[r.Cookie]; ok {
		return e.s
	}
	return sockets.Socket{
		Proto: r.Tuple.Proto, Local: r.Tuple.Local, Remote: r.Tuple.Remote, Cookie: r.Cookie,
		Listening: !r.Tuple.Remote.IsValid(),
	}
}

func canonAP(ap netip.AddrPort) netip.AddrPort {
	if !ap.IsValid() {
		return ap
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

// findCookie returns the cookie of the live socket of a dump on t (a
// listening one when t has no remote end), or 0.
func findCookie(socks []sockets.Socket, t latch.Tuple) uint64 {
	local, remote := canonAP(t.Local), canonAP(t.Remote)
	listening := !remote.IsValid()
	for i := range socks {
		s := &socks[i]
		if !live(s) || s.Proto != t.Proto || canonAP(s.Local) != local {
			continue
		}
		if listening && s.Listening || !listening && !s.Listening && canonAP(s.Remote) == remote {
			return s.Cookie
		}
	}
	return 0
}
