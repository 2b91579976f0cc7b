package xfrm

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink/nl"
)

// SA messages cannot be captured on a kernel without ESP (this project's
// machines): they are built here with vishvananda/netlink's nl structures,
// an encoder written independently of Decode, in the layouts the kernel's
// xfrm_notify_sa and xfrm_exp_state_notify use.

func usersaInfo() *nl.XfrmUsersaInfo {
	var sa nl.XfrmUsersaInfo
	sa.Sel.Family = 2
	sa.Sel.Saddr.FromIP(net.ParseIP("10.99.0.1"))
	sa.Sel.Daddr.FromIP(net.ParseIP("10.99.0.2"))
	sa.Sel.PrefixlenS, sa.Sel.PrefixlenD = 32, 32
	sa.Id.Daddr.FromIP(net.ParseIP("10.99.0.2"))
	sa.Id.Spi = nl.Swap32(0xc0ffee01)
	sa.Id.Proto = 50
	sa.Saddr.FromIP(net.ParseIP("10.99.0.1"))
	sa.Reqid = 3
	sa.Family = 2
	sa.Mode = 0
	return &sa
}

// markAttr is XFRMA_MARK, and XFRMA_ALG_AEAD (an SA with keys).
func markAttr() []byte {
	m := nl.XfrmMark{Value: 0x42, Mask: 0xffffffff}
	aead := nl.XfrmAlgoAEAD{AlgKeyLen: 160, AlgICVLen: 128, AlgKey: make([]byte, 20)}
	copy(aead.AlgName[:], "rfc4106(gcm(aes))")
	return append(attr(attrMark, m.Serialize()), attr(attrAlgAEAD, aead.Serialize())...)
}

func checkState(t *testing.T, what string, st *State) {
	t.Helper()
	want := State{
		Sel: Selector{Src: mustPrefix("10.99.0.1/32"), Dst: mustPrefix("10.99.0.2/32")},
		Src: mustAddr("10.99.0.1"), Dst: mustAddr("10.99.0.2"), SPI: 0xc0ffee01, Proto: ProtoESP, Mode: Transport, Reqid: 3,
		Mark: Mark{0x42, 0xffffffff}, Keyed: true,
	}
	if st == nil || *st != want {
		t.Errorf("%s: %+v, want %+v", what, st, want)
	}
}

func TestDecodeSA(t *testing.T) {
	littleEndian(t)
	sa := usersaInfo()
	body := append(append([]byte{}, sa.Serialize()...), markAttr()...)
	for _, c := range []struct {
		typ  uint16
		kind Kind
	}{{msgNewSA, NewSA}, {msgUpdSA, UpdSA}} {
		ev, ok, err := Decode(c.typ, body)
		if !ok || err != nil || ev.Kind != c.kind {
			t.Fatalf("0x%x: %v %v %v", c.typ, ev.Kind, ok, err)
		}
		checkState(t, c.kind.String(), ev.State)
		// A larval state (ALLOCSPI) has no algorithms.
		if ev, _, _ := Decode(c.typ, sa.Serialize()); ev.State.Keyed {
			t.Error("a state without algorithms is Keyed")
		}
		if got := ev.State.String(); got != "esp spi 0xc0ffee01 10.99.0.1 -> 10.99.0.2 transport reqid 3" {
			t.Errorf("String %q", got)
		}
	}
	// DELSA: xfrm_usersa_id, then XFRMA_SA with the whole state.
	id := nl.XfrmUsersaId{Spi: sa.Id.Spi, Family: 2, Proto: 50}
	id.Daddr = sa.Id.Daddr
	del := append(append(append([]byte{}, id.Serialize()...), attr(attrSA, sa.Serialize())...), markAttr()...)
	ev, ok, err := Decode(msgDelSA, del)
	if !ok || err != nil || ev.Kind != DelSA {
		t.Fatalf("DELSA: %v %v %v", ev.Kind, ok, err)
	}
	checkState(t, "DELSA", ev.State)
	// DELSA without XFRMA_SA: the id alone.
	ev, _, _ = Decode(msgDelSA, id.Serialize())
	if ev.State.SPI != 0xc0ffee01 || ev.State.Dst != mustAddr("10.99.0.2") || ev.State.Proto != 50 || ev.State.Keyed {
		t.Errorf("DELSA id only: %+v", ev.State)
	}
	// EXPIRE: xfrm_user_expire {state; hard}, padded to 8.
	exp := nl.XfrmUserExpire{XfrmUsersaInfo: *sa, Hard: 1}
	ev, ok, err = Decode(msgExpire, append(append([]byte{}, exp.Serialize()...), markAttr()...))
	if !ok || err != nil || ev.Kind != Expire || !ev.Hard {
		t.Fatalf("EXPIRE: %+v %v %v", ev, ok, err)
	}
	checkState(t, "EXPIRE", ev.State)
	if nl.SizeofXfrmUserExpire != sizeUserExpire || nl.SizeofXfrmUsersaInfo != sizeUsersaInfo || nl.SizeofXfrmUserpolicyInfo != sizePolicyInfo ||
		nl.SizeofXfrmUserTmpl != sizeUserTmpl || nl.SizeofXfrmUsersaId != sizeUsersaID || nl.SizeofXfrmUserpolicyId != sizePolicyID {
		t.Error("structure sizes disagree with vishvananda/netlink's")
	}
}

func TestDecodePolExpire(t *testing.T) {
	littleEndian(t)
	var p nl.XfrmUserpolicyInfo
	p.Sel.Family = 10
	p.Sel.Saddr.FromIP(net.ParseIP("fd00::1"))
	p.Sel.Daddr.FromIP(net.ParseIP("fd00::2"))
	p.Sel.PrefixlenS, p.Sel.PrefixlenD = 128, 64
	p.Sel.Proto = 17
	p.Sel.Sport, p.Sel.SportMask = nl.Swap16(53), 0xffff
	p.Priority, p.Index, p.Dir, p.Action = 42, 0x111, 1, 1
	body := make([]byte, sizePolExpire)
	copy(body, p.Serialize())
	body[sizePolicyInfo] = 1 // hard
	var tm nl.XfrmUserTmpl
	tm.XfrmId.Proto = 51
	tm.Family = 10
	tm.Reqid = 77
	tm.Mode = 1
	tm.XfrmId.Daddr.FromIP(net.ParseIP("2001:db8::9"))
	tm.Saddr.FromIP(net.ParseIP("2001:db8::8"))
	body = append(body, attr(attrTmpl, tm.Serialize())...)
	ev, ok, err := Decode(msgPolExpire, body)
	if !ok || err != nil || ev.Kind != PolExpire || !ev.Hard {
		t.Fatalf("POLEXPIRE: %+v %v %v", ev, ok, err)
	}
	q := ev.Policy
	if q.Sel.Src != mustPrefix("fd00::1/128") || q.Sel.Dst != mustPrefix("fd00::/64") || q.Sel.Proto != 17 || q.Sel.SrcPort != 53 ||
		q.Priority != 42 || q.Index != 0x111 || q.Dir != DirOut || q.Action != Block || len(q.Templates) != 1 ||
		q.Templates[0] != (Template{Src: mustAddr("2001:db8::8"), Dst: mustAddr("2001:db8::9"), Proto: ProtoAH, Mode: Tunnel, Reqid: 77}) {
		t.Errorf("POLEXPIRE policy %+v", q)
	}
}
