package sockets

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/btnsd/btnsd/latchmon/internal/nlwatch"
)

// watchBufSize is the receive buffer asked for the notification socket:
// room for tens of thousands of notifications before the kernel drops
// them (with CAP_NET_ADMIN; otherwise net.core.rmem_max caps it).
const watchBufSize = 8 << 20

// Handle reaches the sockets of one network namespace. Its methods are
// safe for concurrent use; each opens its own netlink socket.
type Handle struct {
	ns netns.NsHandle // netns.None(): the namespace of the calling thread

	watchBuf int // receive buffer of Watch's socket; tests shrink it
}

// NewHandle returns a Handle on the network namespace ns, which it
// duplicates (the caller keeps and closes ns). With netns.None() the Handle
// works in the network namespace of the calling thread at each call, which
// is the namespace of the process unless the caller switched a locked
// thread into another one; that needs no privilege beyond what each
// operation needs. Another namespace needs CAP_SYS_ADMIN, to enter it for
// the moment of opening each netlink socket.
func NewHandle(ns netns.NsHandle) (*Handle, error) {
	dup, err := nlwatch.DupNS(ns)
	if err != nil {
		return nil, fmt.Errorf("sockets: duplicate netns handle: %w", err)
	}
	return &Handle{ns: dup, watchBuf: watchBufSize}, nil
}

// Close releases the Handle's namespace handle. Watch channels opened
// before stay open until their contexts end.
func (h *Handle) Close() error { return nlwatch.CloseNS(&h.ns) }

var current = &Handle{ns: netns.None(), watchBuf: watchBufSize}

// Dump returns every TCP and UDP socket, IPv4 and IPv6, in every state, of
// the network namespace of the calling thread. See Handle.Dump.
func Dump(ctx context.Context) ([]Socket, error) { return current.Dump(ctx) }

// Destroy destroys one socket of the network namespace of the calling
// thread. See Handle.Destroy.
func Destroy(s Socket) error { return current.Destroy(s) }

// Watch reports the sockets closed in the network namespace of the calling
// thread. See Handle.Watch.
func Watch(ctx context.Context) (<-chan Event, error) { return current.Watch(ctx) }

// open returns a netlink socket of the sock_diag family in h's namespace.
func (h *Handle) open(bufSize int, groups ...uint) (*nl.NetlinkSocket, error) {
	s, err := nlwatch.Subscribe(h.ns, unix.NETLINK_SOCK_DIAG, bufSize, groups...)
	if err != nil {
		return nil, fmt.Errorf("sockets: open sock_diag netlink socket: %w", err)
	}
	return s, nil
}

// dumpOrder is the order of Dump's requests: one per family and protocol.
var dumpOrder = [...]struct{ family, proto uint8 }{
	{afINET, TCP}, {afINET6, TCP}, {afINET, UDP}, {afINET6, UDP},
}

// Dump returns every TCP and UDP socket, IPv4 and IPv6, in every state, of
// h's namespace: four sock_diag dump requests (TCP and UDP, IPv4 and IPv6)
// on one netlink socket, no per-socket system call. Equivalent to
// `ss -tuan -e`.
//
// A dump is not a snapshot: a socket opened or closed while it runs may or
// may not be in it. A TCP socket closed by its application may still be
// listed after close (FIN-WAIT, TIME-WAIT, with Inode 0); a TIME-WAIT
// socket keeps the cookie of the socket it replaced. Request sockets
// (SYN-RECV, not yet accepted) are listed with their own cookies.
//
// Cancelling ctx aborts the dump; its deadline, if any, bounds it.
func (h *Handle) Dump(ctx context.Context) ([]Socket, error) {
	s, err := h.open(0)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, s.Close)
	defer stop()
	nlwatch.SetTimeout(ctx, s)

	sh := map[int]*nl.SocketHandle{unix.NETLINK_SOCK_DIAG: {Socket: s}}
	var out []Socket
	for _, d := range dumpOrder {
		req := nl.NewNetlinkRequest(msgSockDiagByFamily, unix.NLM_F_DUMP)
		req.Sockets = sh
		req.AddData(dumpReq(d.family, d.proto))
		var perr error
		err := req.ExecuteIter(unix.NETLINK_SOCK_DIAG, msgSockDiagByFamily, func(m []byte) bool {
			so, err := parseDiagMsg(m, d.proto)
			if err != nil {
				perr = err
				return false
			}
			out = append(out, so)
			return true
		})
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("sockets: dump: %w", cerr)
		}
		// inet_diag never marks its dumps interrupted, but a dump is not a
		// snapshot anyway: take what came.
		if err != nil && !errors.Is(err, nl.ErrDumpInterrupted) {
			return nil, fmt.Errorf("sockets: dump %s: %w", reqName(d.family, d.proto), timeoutErr(err))
		}
		if perr != nil {
			return nil, fmt.Errorf("sockets: dump %s: %w", reqName(d.family, d.proto), perr)
		}
	}
	return out, nil
}

// Destroy destroys the socket so, found by its tuple, bound device and
// cookie, with a SOCK_DESTROY request (the kernel needs
// CONFIG_INET_DIAG_DESTROY, and the caller CAP_NET_ADMIN). Equivalent to
// `ss -K` on that one socket, without its risk of hitting a newer socket
// on the same tuple.
//
// A destroyed TCP socket is aborted: the application's pending and next
// calls fail with ECONNABORTED and the peer receives a RST; a listener
// stops listening. A destroyed UDP socket gets the error ECONNABORTED,
// which its pending or next receive returns, and is disconnected; if its
// port was chosen by the kernel it is also unbound (gone from dumps), but
// a UDP socket bound to an explicit port stays bound and goes on
// receiving. For UDP, Destroy is a signal to the application more than a
// reset.
//
// Destroy returns ErrGone when no socket has that tuple and cookie: it was
// closed already, or the tuple belongs to a newer socket (with another
// cookie), which is left alone. The cookie 0, which the kernel never
// gives, always yields ErrGone. A listener or unconnected UDP socket in a
// large SO_REUSEPORT group may be reported gone while it lives: the kernel
// picks one member of the group, and Destroy asks up to 128 times, which
// misses one of n members with probability (1-1/n)^128 (2% for 32). A
// connected socket is never reported gone while it lives.
func (h *Handle) Destroy(so Socket) error {
	d, err := destroyReq(so)
	if err != nil {
		return err
	}
	s, err := h.open(0)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.SetReceiveTimeout(&unix.Timeval{Sec: int64(nlwatch.RequestTimeout / time.Second)}); err != nil {
		return err
	}
	sh := map[int]*nl.SocketHandle{unix.NETLINK_SOCK_DIAG: {Socket: s}}
	destroy := func(d *diagReq) error {
		req := nl.NewNetlinkRequest(msgSockDestroy, unix.NLM_F_ACK)
		req.Sockets = sh
		req.AddData(d)
		return req.ExecuteIter(unix.NETLINK_SOCK_DIAG, 0, func([]byte) bool { return true })
	}
	err = destroy(d)
	if isGone(err) && !so.Remote.IsValid() {
		// A listener or unconnected socket may share its port with others
		// (SO_REUSEPORT). The kernel's lookup then picks one member of the
		// group by a hash of the remote end, which a socket without a peer
		// ignores otherwise: ask again with other remote ports until the
		// pick is ours. The cookie still guards every attempt.
		for port := uint16(1); port <= reuseportTries && isGone(err); port++ {
			d.id.remote = netip.AddrPortFrom(d.id.remote.Addr(), port)
			err = destroy(d)
		}
	}
	switch {
	case err == nil:
		return nil
	case isGone(err):
		return fmt.Errorf("%w: %v", ErrGone, so)
	case errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("sockets: destroy %v: kernel without CONFIG_INET_DIAG_DESTROY: %w", so, err)
	}
	return fmt.Errorf("sockets: destroy %v: %w", so, timeoutErr(err))
}

// reuseportTries is how many remote ports Destroy tries for a socket
// without a peer that the first lookup did not find. In a SO_REUSEPORT group
// of n sockets it misses the one it wants with probability (1-1/n)^128:
// below 1e-7 for 8, 2% for 32, 13% for 64; a socket that is truly gone
// costs 128 more requests, about a millisecond.
const reuseportTries = 128

// isGone reports whether err is the kernel's answer for a socket that it
// did not find with the tuple and cookie asked for: ENOENT
// (inet_diag_find_one_icsk, __udp_diag_destroy), or ESTALE, what
// sock_diag_check_cookie itself says, taken the same way.
func isGone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESTALE)
}

// Watch subscribes to the kernel's sock_diag destroy notifications of h's
// namespace (the SKNLGRP_INET{,6}_{TCP,UDP}_DESTROY groups, open to any
// user) and sends an Event on the returned channel for every TCP or UDP
// socket the kernel frees from then on. The subscription is in place when Watch
// returns: a socket freed after that is reported.
//
// The kernel has no notification for a new socket, so Watch alone never
// learns of one: dump (Dump) to find new sockets, and use Watch to learn
// promptly of the ones that close. Notifications come when the kernel
// frees a socket, which for TCP can be some time after the application
// closed it (FIN-WAIT, LAST-ACK); a TIME-WAIT socket that replaces it is
// freed without notification.
//
// If the reader falls behind, the kernel drops notifications; Watch then
// sends one Event of kind Overflow and goes on. The consumer must then dump
// again to learn which sockets are gone. Watch blocks on a full channel
// rather than dropping anything itself, so a slow consumer shows up as
// Overflow, never as silent loss.
//
// The channel is closed when ctx ends, or after an Event of kind Overflow
// if the socket fails for another reason (the consumer resynchronises and
// watches again).
func (h *Handle) Watch(ctx context.Context) (<-chan Event, error) {
	s, err := h.open(h.watchBuf, grpInetTCPDestroy, grpInetUDPDestroy, grpInet6TCPDestroy, grpInet6UDPDestroy)
	if err != nil {
		return nil, err
	}
	decode := func(m syscall.NetlinkMessage, groups uint32) (Event, bool) {
		if m.Header.Type != msgSockDiagByFamily {
			return Event{}, false
		}
		so, err := parseDiagMsg(m.Data, groupProto(groups))
		if err != nil {
			// A close we cannot name: the consumer re-dumps.
			return Event{Kind: Overflow}, true
		}
		so.Listening = !so.Remote.IsValid()
		return Event{Kind: Closed, Socket: so}, true
	}
	return nlwatch.Watch(ctx, s, decode, func() Event { return Event{Kind: Overflow} }), nil
}

// timeoutErr names the EAGAIN that the nl package returns on a receive
// timeout.
func timeoutErr(err error) error {
	if errors.Is(err, syscall.EAGAIN) {
		return fmt.Errorf("no answer from the kernel: %w", err)
	}
	return err
}

func reqName(family, proto uint8) string {
	f := "inet"
	if family == afINET6 {
		f = "inet6"
	}
	p := "tcp"
	if proto == UDP {
		p = "udp"
	}
	return f + " " + p
}
