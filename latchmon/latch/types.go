package latch

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// LatchID is the handle of a latch (RFC 5660 2.3 "latch handle"). IDs are
// never reused, also across Marshal and Restore. The zero LatchID is no latch.
type LatchID uint64

// State is the state of a latch (RFC 5660 2.2).
type State uint8

// The states of RFC 5660 2.2. None is not a state of a latch: it is the From
// of the Alert that announces a latch's birth.
const (
	None State = iota
	Listener
	Established
	Broken
	Closed
)

var stateNames = [...]string{"NONE", "LISTENER", "ESTABLISHED", "BROKEN", "CLOSED"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// IP protocol numbers the machine knows by name.
const (
	ProtoTCP  uint8 = 6
	ProtoUDP  uint8 = 17
	ProtoSCTP uint8 = 132
)

var protoNames = map[uint8]string{1: "icmp", ProtoTCP: "tcp", ProtoUDP: "udp", 58: "ipv6-icmp", ProtoSCTP: "sctp"}

func protoString(p uint8) string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return strconv.Itoa(int(p))
}

func parseProto(s string) (uint8, error) {
	for p, n := range protoNames {
		if n == s {
			return p, nil
		}
	}
	if s == "icmpv6" {
		return 58, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("latch: unknown protocol %q", s)
	}
	return uint8(n), nil
}

// Tuple is the 5-tuple of a flow, seen from this host.
type Tuple struct {
	Proto  uint8
	Local  netip.AddrPort
	Remote netip.AddrPort
}

func (t Tuple) String() string {
	if !t.Remote.IsValid() {
		return protoString(t.Proto) + " " + t.Local.String()
	}
	return protoString(t.Proto) + " " + t.Local.String() + " " + t.Remote.String()
}

// canon returns t with IPv4-mapped addresses unmapped and zones dropped, as
// the kernel reports flows of dual-stack sockets with mapped addresses.
func (t Tuple) canon() Tuple {
	t.Local = canonAddrPort(t.Local)
	t.Remote = canonAddrPort(t.Remote)
	return t
}

func canonAddrPort(ap netip.AddrPort) netip.AddrPort {
	if !ap.IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

// Endpoint is the 3-tuple of a listening socket: protocol, local address
// and local port (RFC 5660 2.3 CREATE_LISTENER_LATCH). An unspecified
// address (0.0.0.0 or ::) listens on every address of its family; :: also
// takes IPv4.
type Endpoint struct {
	Proto uint8
	Local netip.AddrPort
}

func (e Endpoint) String() string { return protoString(e.Proto) + " " + e.Local.String() }

// Tuple returns e as a Tuple with no remote end, as listener latches report.
func (e Endpoint) Tuple() Tuple { return Tuple{Proto: e.Proto, Local: e.Local} }

// accepts reports whether a flow with local end l arrives at e.
func (e Endpoint) accepts(proto uint8, l netip.AddrPort) bool {
	if e.Proto != proto || e.Local.Port() != l.Port() {
		return false
	}
	a := e.Local.Addr()
	if !a.IsUnspecified() {
		return a == l.Addr()
	}
	return a.Is6() || l.Addr().Is4()
}

// Selector is one traffic selector of a child SA, as strongSwan lists them
// ("10.0.0.0/24[tcp/80]"): a prefix, an IP protocol (0: any) and an
// inclusive port range. The zero range 0-0 means any port; a range with
// FromPort > ToPort (strongSwan's OPAQUE) matches no port.
type Selector struct {
	Prefix   netip.Prefix
	Proto    uint8
	FromPort uint16
	ToPort   uint16
}

// ParseSelector parses a traffic selector in strongSwan's notation:
// "10.0.0.1/32", "fd00::/64[udp]", "10.0.0.0/8[tcp/80]",
// "0.0.0.0/0[tcp/1024-65535]", "::/0[/53]". A bare address is a host prefix.
func ParseSelector(s string) (Selector, error) {
	var sel Selector
	addr, rest, _ := strings.Cut(s, "[")
	var err error
	if strings.Contains(addr, "/") {
		sel.Prefix, err = netip.ParsePrefix(addr)
	} else {
		var a netip.Addr
		a, err = netip.ParseAddr(addr)
		sel.Prefix = netip.PrefixFrom(a, a.BitLen())
	}
	if err != nil {
		return Selector{}, fmt.Errorf("latch: selector %q: %w", s, err)
	}
	sel.Prefix = canonPrefix(sel.Prefix)
	if rest == "" {
		return sel, nil
	}
	inner, ok := strings.CutSuffix(rest, "]")
	if !ok {
		return Selector{}, fmt.Errorf("latch: selector %q: missing ]", s)
	}
	proto, ports, _ := strings.Cut(inner, "/")
	if proto != "" && proto != "%any" && proto != "any" {
		if sel.Proto, err = parseProto(proto); err != nil {
			return Selector{}, fmt.Errorf("latch: selector %q: %w", s, err)
		}
	}
	if ports == "" || ports == "%any" || ports == "any" {
		return sel, nil
	}
	if ports == "OPAQUE" || ports == "%opaque" {
		sel.FromPort, sel.ToPort = 65535, 0
		return sel, nil
	}
	lo, hi, isRange := strings.Cut(ports, "-")
	if !isRange {
		hi = lo
	}
	l, err1 := strconv.ParseUint(lo, 10, 16)
	h, err2 := strconv.ParseUint(hi, 10, 16)
	if err := errors.Join(err1, err2); err != nil {
		return Selector{}, fmt.Errorf("latch: selector %q: bad ports: %w", s, err)
	}
	sel.FromPort, sel.ToPort = uint16(l), uint16(h)
	return sel, nil
}

// MustParseSelector is ParseSelector for literals; it panics on error.
func MustParseSelector(s string) Selector {
	sel, err := ParseSelector(s)
	if err != nil {
		panic(err)
	}
	return sel
}

func (s Selector) String() string {
	b := s.Prefix.String()
	anyPort := s.FromPort == 0 && s.ToPort == 0 || s.FromPort == 0 && s.ToPort == 65535
	if s.Proto == 0 && anyPort {
		return b
	}
	b += "["
	if s.Proto != 0 {
		b += protoString(s.Proto)
	}
	switch {
	case anyPort:
	case s.FromPort == s.ToPort:
		b += "/" + strconv.Itoa(int(s.FromPort))
	default:
		b += "/" + strconv.Itoa(int(s.FromPort)) + "-" + strconv.Itoa(int(s.ToPort))
	}
	return b + "]"
}

// matchesPort reports whether the selector's protocol and ports admit
// proto and port.
func (s Selector) matchesPort(proto uint8, port uint16) bool {
	if s.Proto != 0 && s.Proto != proto {
		return false
	}
	if s.FromPort == 0 && s.ToPort == 0 {
		return true
	}
	return s.FromPort <= port && port <= s.ToPort
}

// Matches reports whether the selector admits the endpoint ap of a flow of
// protocol proto.
func (s Selector) Matches(proto uint8, ap netip.AddrPort) bool {
	return s.matchesPort(proto, ap.Port()) && s.Prefix.Contains(ap.Addr())
}

// single reports whether the selector admits exactly one address and port.
func (s Selector) single(proto uint8) bool {
	return s.Prefix.IsSingleIP() && s.Proto == proto && s.FromPort == s.ToPort && s.FromPort != 0
}

// PeerKind tells how a peer is identified.
type PeerKind uint8

const (
	// KeyPeer is a peer that proved a trusted key: the same peer across
	// rekeys, reauthentication and new IKE SAs, because it proves the key
	// each time. Peers authenticated otherwise (a certificate) are key
	// peers too, named by a string for their proven identity.
	KeyPeer PeerKind = iota + 1
	// AnonymousPeer is a BTNS peer that proved nothing (the public PSK):
	// identified only by its IKE SA lineage, the chain of IKE SAs that
	// descend from one another by IKE rekeying (RFC 5387 5.8). A new IKE SA
	// that is not a rekey, reauthentication included, is another peer.
	AnonymousPeer
)

func (k PeerKind) String() string {
	switch k {
	case KeyPeer:
		return "key"
	case AnonymousPeer:
		return "anonymous"
	}
	return "PeerKind(" + strconv.Itoa(int(k)) + ")"
}

// Auth is what the driver knows of an IKE SA's peer: whether it proved a
// trusted key, and which.
type Auth struct {
	Kind PeerKind
	// Fingerprint names the proven key (SHA256:...) of a KeyPeer; empty
	// for an AnonymousPeer.
	Fingerprint string
}

// Peer is the identity of a peer as latched (RFC 5660 2: "peer
// identity"). Two peers are the same when the Peer values are equal.
type Peer struct {
	Kind PeerKind
	// Fingerprint of a KeyPeer.
	Fingerprint string `json:",omitempty"`
	// Lineage of an AnonymousPeer: a number the machine gives to the
	// first IKE SA of the lineage and carries over IKE rekeys. It is not
	// charon's uniqueid, which restarts at 1 when charon restarts.
	Lineage uint64 `json:",omitempty"`
}

func (p Peer) String() string {
	switch p.Kind {
	case KeyPeer:
		return "key " + p.Fingerprint
	case AnonymousPeer:
		return "anonymous lineage " + strconv.FormatUint(p.Lineage, 10)
	}
	return "no peer"
}

// Protection is what a latch records of the protection of its flow,
// besides the peer (RFC 5660 2, 2.1): the charon connection and child that
// gave it, type and mode of protection, quality of protection, and local
// identity. Two SAs are congruent for a latch when their peer and their
// Protection are equal.
//
// Values are as charon lists them (list-sas, child-updown): "ESP",
// "TUNNEL", "AES_GCM_16", 128, "CURVE_25519". The driver must fill DHGroup
// of a child SA created together with its IKE SA (which carries no key
// exchange of its own, so charon lists none) with the IKE SA's group,
// otherwise its first PFS rekey would look like a change of protection.
type Protection struct {
	Conn, Child  string
	Protocol     string // ESP or AH
	Mode         string // TUNNEL or TRANSPORT
	Encap        bool   // UDP encapsulation
	Encr         string `json:",omitempty"`
	EncrKeySize  int    `json:",omitempty"`
	Integ        string `json:",omitempty"`
	IntegKeySize int    `json:",omitempty"`
	DHGroup      string `json:",omitempty"`
	LocalID      string
}

func (p Protection) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s %s %s", p.Conn, p.Child, p.Protocol, p.Mode)
	if p.Encap {
		b.WriteString(" encap")
	}
	if p.Encr != "" {
		fmt.Fprintf(&b, " %s-%d", p.Encr, p.EncrKeySize)
	}
	if p.Integ != "" {
		fmt.Fprintf(&b, " %s-%d", p.Integ, p.IntegKeySize)
	}
	if p.DHGroup != "" {
		b.WriteString(" " + p.DHGroup)
	}
	b.WriteString(" local " + p.LocalID)
	return b.String()
}

// Disposition is what happens to a flow whose latch breaks (RFC 5660 5.5).
type Disposition uint8

const (
	// DispositionDefault resolves to DispositionReset for TCP and SCTP and
	// to DispositionNotify for other protocols (RFC 5660 5.5 recommends
	// (b), acting as though the connection had been reset, for TCP and
	// SCTP).
	DispositionDefault Disposition = iota
	// DispositionReset alerts and asks the driver to destroy the socket.
	DispositionReset
	// DispositionNotify only alerts; the flow waits for the latch to mend
	// (RFC 5660 5.5 (a)).
	DispositionNotify
)

func (d Disposition) String() string {
	switch d {
	case DispositionDefault:
		return "default"
	case DispositionReset:
		return "reset"
	case DispositionNotify:
		return "notify"
	}
	return "Disposition(" + strconv.Itoa(int(d)) + ")"
}

func (d Disposition) resolve(proto uint8) Disposition {
	if d != DispositionDefault {
		return d
	}
	if proto == ProtoTCP || proto == ProtoSCTP {
		return DispositionReset
	}
	return DispositionNotify
}

// Policy is the latching policy of one charon child config, the machine's
// view of the SPD entry behind it.
type Policy struct {
	Conn, Child string
	// Latch asks for automatic latching (RFC 5660 2: implementations
	// SHOULD create latches by default) of the flows the child's SAs cover
	// and of listening sockets on the ports they cover.
	Latch bool
	// OnBreak is the disposition of the latches created under the policy.
	OnBreak Disposition
	// Protections lists the protections the policy now allows (one per
	// proposal the driver expanded; Conn and Child are taken from the
	// policy, Encap is ignored since NAT decides it). A latch whose
	// protection is no longer allowed breaks (RFC 5660 2.2). Nil means the
	// driver did not say: latched protections are left alone.
	Protections []Protection
	// Removed says the child config is gone: its traffic would no longer
	// be protected as latched, so its latches break.
	Removed bool
}

func (p *Policy) allows(prot Protection) bool {
	if p.Removed {
		return false
	}
	if p.Protections == nil {
		return true
	}
	prot.Encap = false
	for _, a := range p.Protections {
		a.Conn, a.Child, a.Encap = p.Conn, p.Child, false
		if a == prot {
			return true
		}
	}
	return false
}

// IKE describes an IKE SA.
type IKE struct {
	// ID is charon's uniqueid of the IKE SA.
	ID uint64
	// InitiatorSPI and ResponderSPI tell IKE SAs apart when charon reuses
	// a uniqueid after a restart; an IKE SA with a known ID and other SPIs
	// is a new IKE SA.
	InitiatorSPI, ResponderSPI uint64
	Auth                       Auth
	// RemoteID is the identity the peer asserted, kept for INQUIRE (RFC
	// 5660 2). For an anonymous peer it proves nothing.
	RemoteID string
}

// Child describes a child SA.
type Child struct {
	IKEID uint64
	// ID is charon's uniqueid of the child SA.
	ID         uint64
	Protection Protection
	LocalTS    []Selector
	RemoteTS   []Selector
	// Interference marks an object outside the key manager that decides
	// the fate of the packets it covers, such as a kernel SPD entry that
	// bypasses IPsec or an SA charon does not own (RFC 5660 2.3: SPD
	// changes that would bypass or change a latch's protection break it).
	// It conflicts with every latch whose flow it covers, its Protection
	// only describes it (Protection.Child: a reason for the alerts), and no
	// latch is ever made from it.
	Interference bool
}

// Covers reports whether the child's traffic selectors cover the flow t.
func (c *Child) Covers(t Tuple) bool { return covers(c.LocalTS, c.RemoteTS, t.canon()) }

func covers(local, remote []Selector, t Tuple) bool {
	return anyMatches(local, t.Proto, t.Local) && anyMatches(remote, t.Proto, t.Remote)
}

func anyMatches(ss []Selector, proto uint8, ap netip.AddrPort) bool {
	for _, s := range ss {
		if s.Matches(proto, ap) {
			return true
		}
	}
	return false
}

// coversEndpoint reports whether some local selector admits the listening
// endpoint e. An unspecified listening address is covered by any selector
// of a family it listens on.
func coversEndpoint(local []Selector, e Endpoint) bool {
	a := e.Local.Addr()
	for _, s := range local {
		if !s.matchesPort(e.Proto, e.Local.Port()) {
			continue
		}
		if a.IsUnspecified() {
			if a.Is6() || s.Prefix.Addr().Is4() {
				return true
			}
			continue
		}
		if s.Prefix.Contains(a) {
			return true
		}
	}
	return false
}

// Flow is a socket as the kernel reports it (sock_diag).
type Flow struct {
	Tuple Tuple
	// Cookie is the kernel's socket cookie; it tells a new socket from an
	// old one on the same 5-tuple. Zero means unknown.
	Cookie uint64
	// Listening marks a listening socket; only Tuple.Proto and
	// Tuple.Local count then. A socket with no remote end (an invalid or
	// unspecified remote address, or port 0, as an unconnected UDP socket
	// shows) is a listening one too.
	Listening bool
}

// Want holds the optional latch parameters of the API calls (RFC 5660 2.3:
// "[type and quality of protection parameters], [peer ID], [local ID]").
type Want struct {
	Peer       *Peer
	Protection *Protection
	OnBreak    Disposition
}

// Errors returned by Step and the API methods.
var (
	ErrUnknownIKE   = errors.New("latch: unknown IKE SA")
	ErrNotFound     = errors.New("latch: no such latch")
	ErrExists       = errors.New("latch: a latch exists for the tuple")
	ErrConflict     = errors.New("latch: conflicting SAs")
	ErrNoSA         = errors.New("latch: no SA covers the flow")
	ErrNeedSnapshot = errors.New("latch: restored latches await a snapshot of SAs and flows")
	ErrInvalid      = errors.New("latch: invalid argument")
)
