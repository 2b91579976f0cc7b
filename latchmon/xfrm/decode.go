package xfrm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Message types (linux/xfrm.h).
const (
	msgNewSA       = 0x10
	msgDelSA       = 0x11
	msgGetSA       = 0x12
	msgNewPolicy   = 0x13
	msgDelPolicy   = 0x14
	msgGetPolicy   = 0x15
	msgExpire      = 0x18
	msgUpdPolicy   = 0x19
	msgUpdSA       = 0x1a
	msgPolExpire   = 0x1b
	msgFlushSA     = 0x1c
	msgFlushPolicy = 0x1d
)

// Multicast groups (enum xfrm_nlgroups).
const (
	grpExpire = 2 // XFRMNLGRP_EXPIRE
	grpSA     = 3 // XFRMNLGRP_SA
	grpPolicy = 4 // XFRMNLGRP_POLICY
)

// Attributes (enum xfrm_attr_type_t).
const (
	attrAlgAuth      = 1
	attrAlgCrypt     = 2
	attrAlgComp      = 3
	attrAlgAEAD      = 18
	attrAlgAuthTrunc = 20
	attrTmpl         = 5
	attrSA           = 6
	attrPolicy       = 7
	attrPolicyType   = 16
	attrMark         = 21
	attrIfID         = 31
)

// Structure sizes (linux/xfrm.h, 64-bit layout: the lifetimes hold u64s).
const (
	sizeSelector   = 56
	sizeUsersaInfo = 224
	sizeUsersaID   = 24
	sizePolicyInfo = 168
	sizePolicyID   = 64
	sizeUserTmpl   = 64
	sizeUserExpire = 232 // usersa_info + hard, padded
	sizePolExpire  = 176 // userpolicy_info + hard, padded
	sizeUsersaFlsh = 1

	afInet  = 2
	afInet6 = 10
)

var ne = binary.NativeEndian

// ErrShort is returned for a message shorter than its structure.
var ErrShort = errors.New("xfrm: message too short")

// Decode decodes the payload of one netlink message of type typ (after the
// 16-byte nlmsghdr). ok is false for message types Watch does not report
// (ACQUIRE, REPORT, ...).
func Decode(typ uint16, data []byte) (ev Event, ok bool, err error) {
	switch typ {
	case msgNewSA, msgUpdSA:
		st, err := decodeStateAt(data, sizeUsersaInfo)
		kind := NewSA
		if typ == msgUpdSA {
			kind = UpdSA
		}
		return Event{Kind: kind, State: st}, true, err
	case msgDelSA:
		if len(data) < sizeUsersaID {
			return Event{}, true, ErrShort
		}
		attrs := parseAttrs(data[align4(sizeUsersaID):])
		var st *State
		if sa, ok := attrs[attrSA]; ok && len(sa) >= sizeUsersaInfo {
			st = decodeUsersaInfo(sa)
		} else {
			// Only the id: daddr, spi, family, proto.
			fam := ne.Uint16(data[20:22])
			st = &State{Dst: addr(data[0:16], fam), SPI: binary.BigEndian.Uint32(data[16:20]), Proto: data[22]}
		}
		stateAttrs(st, attrs)
		return Event{Kind: DelSA, State: st}, true, nil
	case msgExpire:
		if len(data) < sizeUserExpire {
			return Event{}, true, ErrShort
		}
		st, err := decodeStateAt(data, sizeUserExpire)
		return Event{Kind: Expire, State: st, Hard: data[sizeUsersaInfo] != 0}, true, err
	case msgFlushSA:
		var p uint8
		if len(data) >= sizeUsersaFlsh {
			p = data[0]
		}
		return Event{Kind: FlushSA, FlushProto: p}, true, nil
	case msgNewPolicy, msgUpdPolicy:
		p, err := decodePolicyAt(data, sizePolicyInfo)
		kind := NewPolicy
		if typ == msgUpdPolicy {
			kind = UpdPolicy
		}
		return Event{Kind: kind, Policy: p}, true, err
	case msgDelPolicy:
		if len(data) < sizePolicyID {
			return Event{}, true, ErrShort
		}
		attrs := parseAttrs(data[align4(sizePolicyID):])
		var p *Policy
		if pi, ok := attrs[attrPolicy]; ok && len(pi) >= sizePolicyInfo {
			p = decodePolicyInfo(pi)
		} else {
			p = &Policy{Sel: decodeSelector(data[0:sizeSelector]), Index: ne.Uint32(data[56:60]), Dir: Dir(data[60])}
		}
		policyAttrs(p, attrs)
		return Event{Kind: DelPolicy, Policy: p}, true, nil
	case msgPolExpire:
		if len(data) < sizePolExpire {
			return Event{}, true, ErrShort
		}
		p, err := decodePolicyAt(data, sizePolExpire)
		return Event{Kind: PolExpire, Policy: p, Hard: data[sizePolicyInfo] != 0}, true, err
	case msgFlushPolicy:
		return Event{Kind: FlushPolicy}, true, nil
	}
	return Event{}, false, nil
}

func align4(n int) int { return (n + 3) &^ 3 }

// decodeStateAt decodes an xfrm_usersa_info at the start of data whose
// attributes start after hdr bytes.
func decodeStateAt(data []byte, hdr int) (*State, error) {
	if len(data) < hdr {
		return nil, ErrShort
	}
	st := decodeUsersaInfo(data)
	stateAttrs(st, parseAttrs(data[align4(hdr):]))
	return st, nil
}

func decodePolicyAt(data []byte, hdr int) (*Policy, error) {
	if len(data) < hdr {
		return nil, ErrShort
	}
	p := decodePolicyInfo(data)
	policyAttrs(p, parseAttrs(data[align4(hdr):]))
	return p, nil
}

func addr(b []byte, family uint16) netip.Addr {
	switch family {
	case afInet:
		return netip.AddrFrom4([4]byte(b[:4]))
	case afInet6:
		return netip.AddrFrom16([16]byte(b[:16]))
	}
	return netip.Addr{}
}

func prefix(b []byte, family uint16, bits uint8) netip.Prefix {
	a := addr(b, family)
	if !a.IsValid() || int(bits) > a.BitLen() {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(a, int(bits)).Masked()
}

func decodeSelector(b []byte) Selector {
	fam := ne.Uint16(b[40:42])
	return Selector{
		Dst:         prefix(b[0:16], fam, b[42]),
		Src:         prefix(b[16:32], fam, b[43]),
		DstPort:     binary.BigEndian.Uint16(b[32:34]),
		DstPortMask: binary.BigEndian.Uint16(b[34:36]),
		SrcPort:     binary.BigEndian.Uint16(b[36:38]),
		SrcPortMask: binary.BigEndian.Uint16(b[38:40]),
		Proto:       b[44],
		Ifindex:     int32(ne.Uint32(b[48:52])),
		User:        ne.Uint32(b[52:56]),
	}
}

// decodeUsersaInfo decodes struct xfrm_usersa_info: sel (56), id {daddr,
// spi, proto} (24), saddr (16), lft (64), curlft (32), stats (12), seq,
// reqid, family, mode, ...
func decodeUsersaInfo(b []byte) *State {
	fam := ne.Uint16(b[212:214])
	return &State{
		Sel:   decodeSelector(b[0:sizeSelector]),
		Dst:   addr(b[56:72], fam),
		SPI:   binary.BigEndian.Uint32(b[72:76]),
		Proto: b[76],
		Src:   addr(b[80:96], fam),
		Reqid: ne.Uint32(b[208:212]),
		Mode:  Mode(b[214]),
	}
}

// decodePolicyInfo decodes struct xfrm_userpolicy_info: sel (56), lft
// (64), curlft (32), priority, index, dir, action, flags, share.
func decodePolicyInfo(b []byte) *Policy {
	return &Policy{
		Sel:      decodeSelector(b[0:sizeSelector]),
		Priority: ne.Uint32(b[152:156]),
		Index:    ne.Uint32(b[156:160]),
		Dir:      Dir(b[160]),
		Action:   Action(b[161]),
	}
}

// decodeTmpl decodes struct xfrm_user_tmpl: id {daddr, spi, proto} (24),
// family, saddr, reqid, mode, share, optional, algos.
func decodeTmpl(b []byte) Template {
	fam := ne.Uint16(b[24:26])
	return Template{
		Dst:      addr(b[0:16], fam),
		SPI:      binary.BigEndian.Uint32(b[16:20]),
		Proto:    b[20],
		Src:      addr(b[28:44], fam),
		Reqid:    ne.Uint32(b[44:48]),
		Mode:     Mode(b[48]),
		Optional: b[50] != 0,
	}
}

// parseAttrs returns the payload of each top-level attribute (the last
// one of each type).
func parseAttrs(b []byte) map[uint16][]byte {
	out := make(map[uint16][]byte)
	for len(b) >= 4 {
		l := int(ne.Uint16(b[0:2]))
		t := ne.Uint16(b[2:4]) & 0x3fff // NLA_TYPE_MASK
		if l < 4 || l > len(b) {
			break
		}
		out[t] = b[4:l]
		b = b[min(align4(l), len(b)):]
	}
	return out
}

func stateAttrs(st *State, attrs map[uint16][]byte) {
	for _, a := range []uint16{attrAlgAuth, attrAlgCrypt, attrAlgComp, attrAlgAEAD, attrAlgAuthTrunc} {
		if _, ok := attrs[a]; ok {
			st.Keyed = true
		}
	}
	if m, ok := attrs[attrMark]; ok && len(m) >= 8 {
		st.Mark = Mark{Value: ne.Uint32(m[0:4]), Mask: ne.Uint32(m[4:8])}
	}
	if v, ok := attrs[attrIfID]; ok && len(v) >= 4 {
		st.IfID = ne.Uint32(v)
	}
}

func policyAttrs(p *Policy, attrs map[uint16][]byte) {
	if t, ok := attrs[attrTmpl]; ok {
		for len(t) >= sizeUserTmpl {
			p.Templates = append(p.Templates, decodeTmpl(t[:sizeUserTmpl]))
			t = t[sizeUserTmpl:]
		}
	}
	if m, ok := attrs[attrMark]; ok && len(m) >= 8 {
		p.Mark = Mark{Value: ne.Uint32(m[0:4]), Mask: ne.Uint32(m[4:8])}
	}
	if v, ok := attrs[attrIfID]; ok && len(v) >= 4 {
		p.IfID = ne.Uint32(v)
	}
	if v, ok := attrs[attrPolicyType]; ok && len(v) >= 1 {
		p.Sub = v[0] == 1 // XFRM_POLICY_TYPE_SUB
	}
}

// DecodeMessages decodes a buffer of netlink messages (headers included),
// as read from the socket; for tests and tools.
func DecodeMessages(b []byte) ([]Event, error) {
	var out []Event
	for len(b) >= 16 {
		l := int(ne.Uint32(b[0:4]))
		if l < 16 || l > len(b) {
			return out, fmt.Errorf("xfrm: bad message length %d", l)
		}
		ev, ok, err := Decode(ne.Uint16(b[4:6]), b[16:l])
		if err != nil {
			return out, err
		}
		if ok {
			out = append(out, ev)
		}
		b = b[min(align4(l), len(b)):]
	}
	return out, nil
}
