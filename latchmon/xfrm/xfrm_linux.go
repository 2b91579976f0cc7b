package xfrm

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/btnsd/btnsd/latchmon/internal/nlwatch"
)

// watchBufSize is the receive buffer asked for Watch's socket (with
// CAP_NET_ADMIN; otherwise net.core.rmem_max caps it).
const watchBufSize = 4 << 20

// Handle reaches the XFRM databases of one network namespace. Its methods
// are safe for concurrent use; each opens its own netlink socket.
type Handle struct {
	ns       netns.NsHandle // netns.None(): the namespace of the calling thread
	watchBuf int            // receive buffer of Watch's socket; tests shrink it
}

// NewHandle returns a Handle on the network namespace ns, which it
// duplicates (the caller keeps and closes ns); netns.None() is the
// namespace of the calling thread at each call. Another namespace needs
// CAP_SYS_ADMIN.
func NewHandle(ns netns.NsHandle) (*Handle, error) {
	dup, err := nlwatch.DupNS(ns)
	if err != nil {
		return nil, fmt.Errorf("xfrm: duplicate netns handle: %w", err)
	}
	return &Handle{ns: dup, watchBuf: watchBufSize}, nil
}

// Close releases the Handle's namespace handle.
func (h *Handle) Close() error { return nlwatch.CloseNS(&h.ns) }

var current = &Handle{ns: netns.None(), watchBuf: watchBufSize}

// Watch watches the namespace of the calling thread; see Handle.Watch.
func Watch(ctx context.Context) (<-chan Event, error) { return current.Watch(ctx) }

// Policies lists the SPD of the namespace of the calling thread.
func Policies(ctx context.Context) ([]Policy, error) { return current.Policies(ctx) }

// States lists the SAD of the namespace of the calling thread.
func States(ctx context.Context) ([]State, error) { return current.States(ctx) }

func (h *Handle) open(bufSize int, groups ...uint) (*nl.NetlinkSocket, error) {
	s, err := nlwatch.Subscribe(h.ns, unix.NETLINK_XFRM, bufSize, groups...)
	if err != nil {
		return nil, fmt.Errorf("xfrm: open netlink socket: %w", err)
	}
	return s, nil
}

// Watch subscribes to the XFRM notifications of h's namespace (groups SA,
// POLICY and EXPIRE; receiving them needs CAP_NET_ADMIN) and sends an
// Event for each state and policy change from then on: the subscription is
// in place when Watch returns. List the databases after Watch, not before,
// so that no change falls between the listing and the watch.
//
// Watch blocks on a full channel rather than dropping: a slow consumer
// makes the kernel drop notifications (ENOBUFS), and Watch then sends
// Resync and goes on. On any other socket error it sends Resync and closes
// the channel; the channel is closed when ctx ends.
func (h *Handle) Watch(ctx context.Context) (<-chan Event, error) {
	s, err := h.open(h.watchBuf, grpSA, grpPolicy, grpExpire)
	if err != nil {
		return nil, err
	}
	decode := func(m syscall.NetlinkMessage, _ uint32) (Event, bool) {
		ev, ok, err := Decode(m.Header.Type, m.Data)
		if err != nil {
			return Event{Kind: Resync}, true // a change we cannot name
		}
		return ev, ok
	}
	return nlwatch.Watch(ctx, s, decode, func() Event { return Event{Kind: Resync} }), nil
}

// Policies lists every policy of h's SPD (ip xfrm policy), main and sub.
func (h *Handle) Policies(ctx context.Context) ([]Policy, error) {
	var out []Policy
	err := h.dump(ctx, msgGetPolicy, msgNewPolicy, func(b []byte) error {
		p, err := decodePolicyAt(b, sizePolicyInfo)
		if err == nil {
			out = append(out, *p)
		}
		return err
	})
	return out, err
}

// States lists every state of h's SAD (ip xfrm state).
func (h *Handle) States(ctx context.Context) ([]State, error) {
	var out []State
	err := h.dump(ctx, msgGetSA, msgNewSA, func(b []byte) error {
		st, err := decodeStateAt(b, sizeUsersaInfo)
		if err == nil {
			out = append(out, *st)
		}
		return err
	})
	return out, err
}

func (h *Handle) dump(ctx context.Context, req, answer uint16, fn func([]byte) error) error {
	s, err := h.open(0)
	if err != nil {
		return err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, s.Close)
	defer stop()
	nlwatch.SetTimeout(ctx, s)
	r := nl.NewNetlinkRequest(int(req), unix.NLM_F_DUMP)
	r.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_XFRM: {Socket: s}}
	// No payload: the kernel parses a GETSA dump request's payload as
	// attributes, and the 16-byte ifinfomsg vishvananda/netlink sends
	// there only earns a "bytes leftover" warning in the kernel log.
	var perr error
	err = r.ExecuteIter(unix.NETLINK_XFRM, answer, func(b []byte) bool {
		perr = fn(b)
		return perr == nil
	})
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("xfrm: dump: %w", cerr)
	}
	if errors.Is(err, nl.ErrDumpInterrupted) {
		err = nil // a dump is no snapshot anyway; the watch reports the rest
	}
	if errors.Is(err, syscall.EAGAIN) {
		err = fmt.Errorf("no answer from the kernel: %w", err)
	}
	if err == nil {
		err = perr
	}
	if err != nil {
		return fmt.Errorf("xfrm: dump: %w", err)
	}
	return nil
}
