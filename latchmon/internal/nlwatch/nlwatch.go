//go:build linux

// Package nlwatch holds what latchmon's netlink event sources (sock_diag
// destroy notifications, XFRM notifications) share: a subscription in a
// network namespace and the receive loop that turns kernel messages into
// events and reports lost ones.
package nlwatch

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Subscribe opens a netlink socket of protocol proto in ns (a closed
// handle, netns.None(), means the calling thread's namespace) subscribed to
// groups. A positive bufSize asks for that receive buffer: forced where the
// process may (CAP_NET_ADMIN), else what net.core.rmem_max allows.
func Subscribe(ns netns.NsHandle, proto int, bufSize int, groups ...uint) (*nl.NetlinkSocket, error) {
	var s *nl.NetlinkSocket
	var err error
	if ns.IsOpen() {
		s, err = nl.SubscribeAt(ns, netns.None(), proto, groups...)
	} else {
		s, err = nl.Subscribe(proto, groups...)
	}
	if err != nil {
		return nil, err
	}
	if bufSize > 0 {
		if s.SetReceiveBufferSize(bufSize, true) != nil {
			_ = s.SetReceiveBufferSize(bufSize, false)
		}
	}
	return s, nil
}

// Watch receives from s in a goroutine until ctx ends, and returns the
// events it makes: for each message from the kernel (messages from other
// senders are ignored), decode returns the event to deliver, or false for
// none. When the kernel dropped messages because the socket fell behind
// (ENOBUFS), Watch delivers lost() and goes on; on any other socket error
// it delivers lost() and stops. Sends block rather than drop: a slow
// consumer makes the kernel drop, which is then reported. The channel is
// closed when Watch stops; s is closed with it.
func Watch[E any](ctx context.Context, s *nl.NetlinkSocket, decode func(m syscall.NetlinkMessage, groups uint32) (E, bool), lost func() E) <-chan E {
	ch := make(chan E, 64)
	stop := context.AfterFunc(ctx, s.Close)
	go func() {
		defer close(ch)
		defer stop()
		defer s.Close()
		send := func(ev E) bool {
			select {
			case ch <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			msgs, from, err := s.Receive()
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, unix.ENOBUFS) {
				if !send(lost()) {
					return
				}
				continue
			}
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			if err != nil {
				// Unexpected: the consumer cannot trust what it knows.
				send(lost())
				return
			}
			if from.Pid != 0 {
				continue // not from the kernel
			}
			for _, m := range msgs {
				if ev, ok := decode(m, from.Groups); ok && !send(ev) {
					return
				}
			}
		}
	}()
	return ch
}

// DupNS returns a duplicate of the namespace handle ns that the caller of
// a Handle constructor may close, or netns.None() for netns.None().
func DupNS(ns netns.NsHandle) (netns.NsHandle, error) {
	if !ns.IsOpen() {
		return netns.None(), nil
	}
	fd, err := unix.FcntlInt(uintptr(ns), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return netns.None(), err
	}
	return netns.NsHandle(fd), nil
}

// CloseNS closes *ns, if open, and sets it to netns.None().
func CloseNS(ns *netns.NsHandle) error {
	if !ns.IsOpen() {
		return nil
	}
	err := ns.Close()
	*ns = netns.None()
	return err
}

// RequestTimeout bounds one request-and-answer exchange when its context
// has no deadline; the kernel answers at once, this only guards against a
// lost reply.
const RequestTimeout = 30 * time.Second

// SetTimeout gives s send and receive timeouts: the time left before ctx's
// deadline, or RequestTimeout.
func SetTimeout(ctx context.Context, s *nl.NetlinkSocket) {
	d := RequestTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = max(time.Until(dl), time.Millisecond)
	}
	tv := unix.NsecToTimeval(d.Nanoseconds())
	_ = s.SetReceiveTimeout(&tv)
	_ = s.SetSendTimeout(&tv)
}
