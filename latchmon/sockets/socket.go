package sockets

import (
	"errors"
	"fmt"
	"net/netip"
)

// IP protocol numbers of the sockets this package reports.
const (
	TCP uint8 = 6
	UDP uint8 = 17
)

// Socket states as the kernel reports them (include/net/tcp_states.h). UDP
// sockets use two of them: StateEstablished when connected, StateClose when
// not.
const (
	StateEstablished uint8 = 1
	StateSynSent     uint8 = 2
	StateSynRecv     uint8 = 3
	StateFinWait1    uint8 = 4
	StateFinWait2    uint8 = 5
	StateTimeWait    uint8 = 6
	StateClose       uint8 = 7
	StateCloseWait   uint8 = 8
	StateLastAck     uint8 = 9
	StateListen      uint8 = 10
	StateClosing     uint8 = 11
)

var stateNames = [...]string{
	StateEstablished: "ESTABLISHED",
	StateSynSent:     "SYN-SENT",
	StateSynRecv:     "SYN-RECV",
	StateFinWait1:    "FIN-WAIT-1",
	StateFinWait2:    "FIN-WAIT-2",
	StateTimeWait:    "TIME-WAIT",
	StateClose:       "CLOSE",
	StateCloseWait:   "CLOSE-WAIT",
	StateLastAck:     "LAST-ACK",
	StateListen:      "LISTEN",
	StateClosing:     "CLOSING",
}

// StateString names a socket state as ss(8) does ("ESTABLISHED", "LISTEN").
func StateString(s uint8) string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return fmt.Sprintf("STATE(%d)", s)
}

// ErrGone is returned by Destroy when the kernel has no socket with the
// given tuple and cookie: it was closed, or the tuple now belongs to a
// newer socket, which was left alone.
var ErrGone = errors.New("sockets: socket gone")

// Socket is one TCP or UDP socket, IPv4 or IPv6, as sock_diag reports it.
//
// Addresses are as the kernel reports them, except that IPv4-mapped IPv6
// addresses (a dual-stack IPv6 socket talking IPv4) are unmapped, so that
// one flow has one tuple whatever the socket's family. Local is always
// valid, with the unspecified address of the socket's family when it is
// bound to no address. Remote is the zero netip.AddrPort when the socket
// has no peer (a TCP listener, an unconnected UDP socket).
type Socket struct {
	Proto  uint8 // TCP or UDP
	Local  netip.AddrPort
	Remote netip.AddrPort
	// State is the kernel's state: a TCP state (StateListen,
	// StateEstablished, ...); for UDP, StateEstablished when connected and
	// StateClose when not.
	State uint8
	// Cookie is the kernel's 64-bit socket cookie (SO_COOKIE): unique among
	// the sockets of a boot, never reused, so it tells a new socket from an
	// old one on the same tuple.
	Cookie uint64
	// UID owns the socket (in the user namespace of the reader); Inode is
	// the inode of its file (0 once the application has closed it, as for
	// a socket in TIME-WAIT or a request socket in SYN-RECV).
	UID   uint32
	Inode uint32
	// Listening reports a socket that takes flows on a 3-tuple: a TCP
	// socket in LISTEN, or an unconnected UDP socket.
	Listening bool
	// Interface is the index of the device the socket is bound to
	// (SO_BINDTODEVICE), 0 if none. Destroy passes it back to the kernel,
	// whose lookup needs it for bound sockets.
	Interface uint32
}

// String formats s as "tcp 10.0.0.1:22 10.0.0.2:50000 ESTABLISHED
// cookie=0x2a", without the remote end when there is none.
func (s Socket) String() string {
	p := fmt.Sprintf("proto(%d)", s.Proto)
	switch s.Proto {
	case TCP:
		p = "tcp"
	case UDP:
		p = "udp"
	}
	r := ""
	if s.Remote.IsValid() {
		r = " " + s.Remote.String()
	}
	return fmt.Sprintf("%s %s%s %s cookie=%#x", p, s.Local, r, StateString(s.State), s.Cookie)
}

// EventKind says what an Event reports.
type EventKind uint8

const (
	// Closed reports that the kernel freed a socket; Event.Socket says
	// which one (see Event).
	Closed EventKind = iota + 1
	// Overflow reports that the kernel dropped notifications because the
	// reader fell behind (ENOBUFS): some sockets may have closed unseen,
	// and the consumer must dump again.
	Overflow
)

func (k EventKind) String() string {
	switch k {
	case Closed:
		return "closed"
	case Overflow:
		return "overflow"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is one sock_diag destroy notification, or an Overflow.
//
// For Closed, Socket is the socket as the kernel saw it when it freed it:
// Proto, Cookie, the addresses and Remote are set, State is usually
// StateClose, Inode is 0. The kernel may already have released the local
// port and then reports 0 (seen for a UDP socket that Destroy had
// unbound): match closed sockets by Cookie, which is always set. Listening
// is set when the socket had no remote end.
type Event struct {
	Kind   EventKind
	Socket Socket
}

func (e Event) String() string {
	if e.Kind == Closed {
		return "closed " + e.Socket.String()
	}
	return e.Kind.String()
}
