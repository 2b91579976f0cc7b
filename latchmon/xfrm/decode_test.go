package xfrm

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
)

func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func littleEndian(t *testing.T) {
	t.Helper()
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], 1)
	if b[0] != 1 {
		t.Skip("golden bytes are little-endian")
	}
}

type golden struct {
	typ  uint16
	data []byte
}

func readGolden(t *testing.T, path string) []golden {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []golden
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#") || line == "":
		case strings.HasPrefix(line, "type "):
			n, err := strconv.ParseUint(strings.TrimPrefix(line, "type "), 0, 16)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, golden{typ: uint16(n)})
		default:
			b, err := hex.DecodeString(line)
			if err != nil {
				t.Fatal(err)
			}
			out[len(out)-1].data = b
		}
	}
	return out
}

// TestDecodeGoldenPolicies decodes notifications the kernel sent (see the
// file's header for the commands).
func TestDecodeGoldenPolicies(t *testing.T) {
	littleEndian(t)
	msgs := readGolden(t, "testdata/policy_notifications.txt")
	if len(msgs) != 3 {
		t.Fatalf("%d messages", len(msgs))
	}
	var evs []Event
	for _, m := range msgs {
		ev, ok, err := Decode(m.typ, m.data)
		if err != nil || !ok {
			t.Fatalf("type 0x%x: ok %v, %v", m.typ, ok, err)
		}
		evs = append(evs, ev)
	}
	p := evs[0].Policy
	if evs[0].Kind != NewPolicy || p.Sel.Src != netip.MustParsePrefix("10.99.0.1/32") || p.Sel.Dst != netip.MustParsePrefix("10.99.0.2/32") ||
		p.Sel.Proto != 6 || p.Sel.DstPort != 80 || p.Sel.DstPortMask != 0xffff || p.Sel.SrcPortMask != 0 ||
		p.Dir != DirOut || p.Action != Allow || p.Priority != 100 || !p.Bypass() || p.Index == 0 || p.Mark != (Mark{}) {
		t.Errorf("first: %v %+v", evs[0].Kind, p)
	}
	if got, want := p.String(), "bypass policy 10.99.0.1/32 -> 10.99.0.2/32:80 proto 6 dir out priority 100"; got != want {
		t.Errorf("String %q, want %q", got, want)
	}
	q := evs[1].Policy
	tm := Template{Src: mustAddr("2001:db8::2"), Dst: mustAddr("2001:db8::1"), Proto: ProtoESP, SPI: 0x1234, Mode: Tunnel, Reqid: 9}
	if evs[1].Kind != NewPolicy || q.Sel.Src != netip.MustParsePrefix("fd00::2/128") || q.Sel.Dst != netip.MustParsePrefix("fd00::1/128") ||
		q.Dir != DirIn || q.Priority != 7 || len(q.Templates) != 1 || q.Templates[0] != tm || q.Mark != (Mark{0x42, 0xff}) || q.Bypass() {
		t.Errorf("second: %v %+v", evs[1].Kind, q)
	}
	if got := q.Describe(); got != "protect policy (esp tunnel reqid 9 spi 0x00001234 2001:db8::2 -> 2001:db8::1)" {
		t.Errorf("Describe %q", got)
	}
	d := evs[2].Policy
	if evs[2].Kind != DelPolicy || d.Index != p.Index || d.Sel != p.Sel || d.Priority != 100 || d.Dir != DirOut {
		t.Errorf("third: %v %+v, want the first policy", evs[2].Kind, d)
	}
	// The same, as read from the socket: headers included.
	var buf []byte
	for _, m := range msgs {
		buf = append(buf, nlmsg(m.typ, m.data)...)
	}
	all, err := DecodeMessages(buf)
	if err != nil || len(all) != 3 || all[2].Kind != DelPolicy {
		t.Fatalf("DecodeMessages: %d events, %v", len(all), err)
	}
}

func nlmsg(typ uint16, data []byte) []byte {
	b := make([]byte, 16, 16+align4(len(data)))
	binary.NativeEndian.PutUint32(b[0:4], uint32(16+len(data)))
	binary.NativeEndian.PutUint16(b[4:6], typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func attr(typ uint16, data []byte) []byte {
	b := make([]byte, 4, 4+align4(len(data)))
	binary.NativeEndian.PutUint16(b[0:2], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func TestDecodeShort(t *testing.T) {
	for _, typ := range []uint16{msgNewSA, msgDelSA, msgExpire, msgNewPolicy, msgDelPolicy, msgPolExpire} {
		if _, ok, err := Decode(typ, make([]byte, 10)); !ok || err == nil {
			t.Errorf("type 0x%x: ok %v err %v, want ErrShort", typ, ok, err)
		}
	}
	if _, ok, _ := Decode(0x17 /* ACQUIRE */, nil); ok {
		t.Error("ACQUIRE reported")
	}
	if ev, ok, err := Decode(msgFlushSA, []byte{50, 0, 0, 0}); !ok || err != nil || ev.Kind != FlushSA || ev.FlushProto != 50 {
		t.Errorf("FLUSHSA: %+v %v %v", ev, ok, err)
	}
	if ev, ok, err := Decode(msgFlushPolicy, nil); !ok || err != nil || ev.Kind != FlushPolicy {
		t.Errorf("FLUSHPOLICY: %+v %v %v", ev, ok, err)
	}
}
