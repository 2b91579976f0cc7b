package sockets

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// The sock_diag wire format (include/uapi/linux/inet_diag.h), kept free of
// I/O so that it can be tested on any OS.

const (
	afINET  = 2
	afINET6 = 10

	// msgSockDiagByFamily and msgSockDestroy are the nlmsg types of
	// SOCK_DIAG_BY_FAMILY and SOCK_DESTROY (include/uapi/linux/sock_diag.h).
	msgSockDiagByFamily = 20
	msgSockDestroy      = 21

	// The sock_diag multicast groups of destroy notifications
	// (enum sknetlink_groups).
	grpInetTCPDestroy  = 1
	grpInetUDPDestroy  = 2
	grpInet6TCPDestroy = 3
	grpInet6UDPDestroy = 4

	attrProtocol = 10 // INET_DIAG_PROTOCOL, a u8

	noCookie = 0xffffffff // INET_DIAG_NOCOOKIE

	sizeofSockID  = 48 // struct inet_diag_sockid
	sizeofReq     = 8 + sizeofSockID
	sizeofDiagMsg = 4 + sizeofSockID + 20 // struct inet_diag_msg
)

// nativeEndian is the byte order of the host, which sock_diag uses for
// everything but ports and addresses. Every platform btnsd runs on is
// little-endian; a big-endian build would swap it (binary.NativeEndian).
var nativeEndian = binary.NativeEndian

// diagReq is struct inet_diag_req_v2. It implements the nl package's
// NetlinkRequestData.
type diagReq struct {
	family, proto uint8
	states        uint32
	id            sockID
}

// sockID is struct inet_diag_sockid.
type sockID struct {
	local, remote netip.AddrPort // in the request's family
	ifindex       uint32
	cookie        uint64
	noCookie      bool
}

func (r *diagReq) Len() int { return sizeofReq }

func (r *diagReq) Serialize() []byte {
	b := make([]byte, sizeofReq)
	b[0] = r.family
	b[1] = r.proto
	// b[2] idiag_ext: no extensions, b[3] pad.
	nativeEndian.PutUint32(b[4:], r.states)
	id := b[8:]
	binary.BigEndian.PutUint16(id[0:], r.id.local.Port())
	binary.BigEndian.PutUint16(id[2:], r.id.remote.Port())
	putAddr(id[4:20], r.id.local.Addr())
	putAddr(id[20:36], r.id.remote.Addr())
	nativeEndian.PutUint32(id[36:], r.id.ifindex)
	lo, hi := uint32(r.id.cookie), uint32(r.id.cookie>>32)
	if r.id.noCookie {
		lo, hi = noCookie, noCookie
	}
	nativeEndian.PutUint32(id[40:], lo)
	nativeEndian.PutUint32(id[44:], hi)
	return b
}

// putAddr writes a into the 16 bytes of an idiag_src or idiag_dst: an IPv4
// address takes the first four, as the kernel reads it.
func putAddr(b []byte, a netip.Addr) {
	switch {
	case a.Is4():
		v := a.As4()
		copy(b, v[:])
	case a.Is6():
		v := a.As16()
		copy(b, v[:])
	}
}

// destroyReq builds the SOCK_DESTROY request for s: the exact socket, by
// tuple, bound device and cookie.
func destroyReq(s Socket) (*diagReq, error) {
	if s.Proto != TCP && s.Proto != UDP {
		return nil, fmt.Errorf("sockets: destroy %v: protocol %d not supported", s, s.Proto)
	}
	if !s.Local.IsValid() {
		return nil, fmt.Errorf("sockets: destroy %v: no local address", s)
	}
	la := s.Local.Addr().WithZone("")
	fam := uint8(afINET6)
	if la.Is4() {
		fam = afINET
	}
	ra := s.Remote.Addr().WithZone("")
	if !s.Remote.IsValid() {
		ra = netip.IPv4Unspecified()
		if fam == afINET6 {
			ra = netip.IPv6Unspecified()
		}
	}
	if ra.Is4() != la.Is4() {
		// A dual-stack socket reported with an IPv6 local end and an IPv4
		// peer cannot exist after unmapping; refuse rather than guess.
		return nil, fmt.Errorf("sockets: destroy %v: local and remote addresses of different families", s)
	}
	return &diagReq{
		family: fam,
		proto:  s.Proto,
		states: ^uint32(0),
		id: sockID{
			local:   netip.AddrPortFrom(la, s.Local.Port()),
			remote:  netip.AddrPortFrom(ra, s.Remote.Port()),
			ifindex: s.Interface,
			cookie:  s.Cookie,
		},
	}, nil
}

// dumpReq builds the SOCK_DIAG_BY_FAMILY dump request of every socket of
// one family and protocol, in every state.
func dumpReq(family, proto uint8) *diagReq {
	return &diagReq{
		family: family,
		proto:  proto,
		states: ^uint32(0),
		id:     sockID{noCookie: true},
	}
}

// parseDiagMsg decodes a struct inet_diag_msg and, when present, the
// INET_DIAG_PROTOCOL attribute that follows it. proto is the protocol of
// the request (or multicast group) the message answers, used when the
// attribute is absent. IPv4-mapped addresses are unmapped.
func parseDiagMsg(b []byte, proto uint8) (Socket, error) {
	if len(b) < sizeofDiagMsg {
		return Socket{}, fmt.Errorf("sockets: inet_diag_msg of %d bytes, want %d", len(b), sizeofDiagMsg)
	}
	fam := b[0]
	if fam != afINET && fam != afINET6 {
		return Socket{}, fmt.Errorf("sockets: inet_diag_msg of address family %d", fam)
	}
	if p, ok := findU8Attr(b[sizeofDiagMsg:], attrProtocol); ok {
		proto = p
	}
	id := b[4:]
	s := Socket{
		Proto:     proto,
		State:     b[1],
		Local:     netip.AddrPortFrom(getAddr(fam, id[4:20]), binary.BigEndian.Uint16(id[0:])),
		Interface: nativeEndian.Uint32(id[36:]),
		Cookie:    uint64(nativeEndian.Uint32(id[40:])) | uint64(nativeEndian.Uint32(id[44:]))<<32,
		UID:       nativeEndian.Uint32(b[64:]),
		Inode:     nativeEndian.Uint32(b[68:]),
	}
	ra, rp := getAddr(fam, id[20:36]), binary.BigEndian.Uint16(id[2:])
	if !ra.IsUnspecified() || rp != 0 {
		s.Remote = netip.AddrPortFrom(ra, rp)
	}
	switch proto {
	case TCP:
		s.Listening = s.State == StateListen
	case UDP:
		s.Listening = s.State == StateClose
	}
	return s, nil
}

func getAddr(fam uint8, b []byte) netip.Addr {
	if fam == afINET {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16([16]byte(b[:16])).Unmap()
}

// findU8Attr returns the first byte of the rtattr of type typ in b.
func findU8Attr(b []byte, typ uint16) (uint8, bool) {
	for len(b) >= 4 {
		l := int(nativeEndian.Uint16(b[0:]))
		t := nativeEndian.Uint16(b[2:]) &^ 0xc000 // NLA_F_NESTED, NLA_F_NET_BYTEORDER
		if l < 4 || l > len(b) {
			return 0, false
		}
		if t == typ && l >= 5 {
			return b[4], true
		}
		l = (l + 3) &^ 3
		if l > len(b) {
			return 0, false
		}
		b = b[l:]
	}
	return 0, false
}

// groupProto returns the protocol of a destroy notification from the
// multicast group mask it was sent to, 0 if unknown.
func groupProto(groups uint32) uint8 {
	switch {
	case groups&(1<<(grpInetTCPDestroy-1)|1<<(grpInet6TCPDestroy-1)) != 0:
		return TCP
	case groups&(1<<(grpInetUDPDestroy-1)|1<<(grpInet6UDPDestroy-1)) != 0:
		return UDP
	}
	return 0
}
