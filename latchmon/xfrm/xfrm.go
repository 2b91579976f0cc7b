package xfrm

import (
	"fmt"
	"net/netip"
	"strings"
)

// Kind is the kind of an Event.
type Kind uint8

// Event kinds, one per XFRM message, and Resync.
const (
	NewSA       Kind = iota + 1 // XFRM_MSG_NEWSA
	DelSA                       // XFRM_MSG_DELSA
	UpdSA                       // XFRM_MSG_UPDSA
	Expire                      // XFRM_MSG_EXPIRE (Hard: the state is gone)
	FlushSA                     // XFRM_MSG_FLUSHSA (FlushProto, 0: all)
	NewPolicy                   // XFRM_MSG_NEWPOLICY
	DelPolicy                   // XFRM_MSG_DELPOLICY
	UpdPolicy                   // XFRM_MSG_UPDPOLICY
	PolExpire                   // XFRM_MSG_POLEXPIRE (Hard: the policy is gone)
	FlushPolicy                 // XFRM_MSG_FLUSHPOLICY
	Resync                      // notifications were lost (ENOBUFS): list again
)

var kindNames = [...]string{"", "NEWSA", "DELSA", "UPDSA", "EXPIRE", "FLUSHSA", "NEWPOLICY", "DELPOLICY", "UPDPOLICY", "POLEXPIRE", "FLUSHPOLICY", "RESYNC"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Dir is the direction of a policy.
type Dir uint8

// Policy directions (XFRM_POLICY_IN, OUT, FWD).
const (
	DirIn  Dir = 0
	DirOut Dir = 1
	DirFwd Dir = 2
)

func (d Dir) String() string {
	switch d {
	case DirIn:
		return "in"
	case DirOut:
		return "out"
	case DirFwd:
		return "fwd"
	}
	return fmt.Sprintf("dir(%d)", uint8(d))
}

// Action is what a policy does with the packets it matches.
type Action uint8

// Policy actions (XFRM_POLICY_ALLOW, XFRM_POLICY_BLOCK). An allow policy
// with templates protects (RFC 4301 PROTECT); without, it bypasses.
const (
	Allow Action = 0
	Block Action = 1
)

func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Block:
		return "block"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Mode is the mode of a state or template (XFRM_MODE_*).
type Mode uint8

// Modes.
const (
	Transport Mode = 0
	Tunnel    Mode = 1
	RouteOpt  Mode = 2
	InTrigger Mode = 3
	BEET      Mode = 4
)

func (m Mode) String() string {
	switch m {
	case Transport:
		return "transport"
	case Tunnel:
		return "tunnel"
	case RouteOpt:
		return "ro"
	case InTrigger:
		return "in_trigger"
	case BEET:
		return "beet"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// IP protocols of states and templates.
const (
	ProtoESP  uint8 = 50
	ProtoAH   uint8 = 51
	ProtoCOMP uint8 = 108
)

// ProtoName names an IPsec protocol ("esp", "ah", "comp") or gives its number.
func ProtoName(p uint8) string {
	switch p {
	case ProtoESP:
		return "esp"
	case ProtoAH:
		return "ah"
	case ProtoCOMP:
		return "comp"
	}
	return fmt.Sprint(p)
}

// Selector is an XFRM selector: which packets a policy or state applies
// to. Src and Dst are invalid when the family is unspecified (a state
// without selector). A port mask of zero means any port.
type Selector struct {
	Src, Dst             netip.Prefix
	Proto                uint8 // 0: any
	SrcPort, SrcPortMask uint16
	DstPort, DstPortMask uint16
	Ifindex              int32
	User                 uint32
}

// IsValid reports whether the selector names addresses.
func (s Selector) IsValid() bool { return s.Src.IsValid() && s.Dst.IsValid() }

func (s Selector) String() string {
	if !s.IsValid() {
		return "any"
	}
	var b strings.Builder
	b.WriteString(s.Src.String())
	if s.SrcPortMask != 0 {
		fmt.Fprintf(&b, ":%d", s.SrcPort)
	}
	b.WriteString(" -> ")
	b.WriteString(s.Dst.String())
	if s.DstPortMask != 0 {
		fmt.Fprintf(&b, ":%d", s.DstPort)
	}
	if s.Proto != 0 {
		fmt.Fprintf(&b, " proto %d", s.Proto)
	}
	return b.String()
}

// Mark is an XFRM mark: the object applies to packets whose mark m has
// m&Mask == Value&Mask.
type Mark struct{ Value, Mask uint32 }

// MatchesUnmarked reports whether the object applies to unmarked packets
// (mark 0).
func (m Mark) MatchesUnmarked() bool { return m.Value&m.Mask == 0 }

// Template is one template of a protecting policy (xfrm_user_tmpl): the SA
// that packets must be (or have been) processed with.
type Template struct {
	Src, Dst netip.Addr // tunnel endpoints; invalid in transport mode when unset
	Proto    uint8      // ProtoESP, ProtoAH, ProtoCOMP
	SPI      uint32     // 0: any
	Mode     Mode
	Reqid    uint32 // 0: any
	Optional bool
}

func (t Template) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s reqid %d", ProtoName(t.Proto), t.Mode, t.Reqid)
	if t.SPI != 0 {
		fmt.Fprintf(&b, " spi 0x%08x", t.SPI)
	}
	if t.Src.IsValid() || t.Dst.IsValid() {
		fmt.Fprintf(&b, " %v -> %v", t.Src, t.Dst)
	}
	return b.String()
}

// Policy is an SPD entry (xfrm_userpolicy_info and its attributes).
type Policy struct {
	Sel       Selector
	Dir       Dir
	Action    Action
	Priority  uint32 // lower wins
	Index     uint32 // the kernel's index, unique in the namespace
	Templates []Template
	Mark      Mark
	IfID      uint32
	// Sub marks a sub policy (XFRMA_POLICY_TYPE XFRM_POLICY_TYPE_SUB).
	Sub bool
}

// Bypass reports whether the policy lets packets through unprotected.
func (p *Policy) Bypass() bool { return p.Action == Allow && len(p.Templates) == 0 }

// Describe names the policy's effect in a few words: "bypass policy",
// "block policy" or "protect policy (esp tunnel reqid 1 ...)".
func (p *Policy) Describe() string {
	switch {
	case p.Action == Block:
		return "block policy"
	case p.Bypass():
		return "bypass policy"
	}
	ts := make([]string, len(p.Templates))
	for i, t := range p.Templates {
		ts[i] = t.String()
	}
	return "protect policy (" + strings.Join(ts, ", ") + ")"
}

func (p *Policy) String() string {
	return fmt.Sprintf("%s %s dir %s priority %d", p.Describe(), p.Sel, p.Dir, p.Priority)
}

// State is an SAD entry (xfrm_usersa_info and its attributes).
type State struct {
	Sel      Selector
	Src, Dst netip.Addr
	SPI      uint32
	Proto    uint8
	Mode     Mode
	Reqid    uint32
	Mark     Mark
	IfID     uint32
	// Keyed says the state has algorithms (and keys): it can protect
	// packets. A larval state (an SPI allocated with XFRM_MSG_ALLOCSPI
	// while an SA is negotiated, or an acquire's placeholder) has none.
	Keyed bool
}

func (s *State) String() string {
	return fmt.Sprintf("%s spi 0x%08x %v -> %v %s reqid %d", ProtoName(s.Proto), s.SPI, s.Src, s.Dst, s.Mode, s.Reqid)
}

// Event is one decoded notification. Policy is set for the policy kinds,
// State for the SA kinds; Resync and the flushes carry neither.
type Event struct {
	Kind   Kind
	Policy *Policy
	State  *State
	// Hard is set on a hard Expire or PolExpire: the object is deleted.
	Hard bool
	// FlushProto is the protocol a FlushSA flushed (0: every one).
	FlushProto uint8
}
