package sockets

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
)

// unhex decodes hex written with spaces and comments ("# ...") for
// readability.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		b.WriteString(strings.Join(strings.Fields(line), ""))
	}
	out, err := hex.DecodeString(b.String())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDestroyRequestBytes(t *testing.T) {
	s := Socket{
		Proto:     TCP,
		Local:     netip.MustParseAddrPort("10.0.0.1:22"),
		Remote:    netip.MustParseAddrPort("10.0.0.2:50000"),
		Cookie:    0x1122334455667788,
		Interface: 3,
	}
	r, err := destroyReq(s)
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, `
		02 06 00 00              # AF_INET, IPPROTO_TCP, no ext, pad
		ffffffff                 # all states
		0016 c350                # sport 22, dport 50000, big-endian
		0a000001 000000000000000000000000 # src
		0a000002 000000000000000000000000 # dst
		03000000                 # if 3
		88776655 44332211        # cookie: low word, high word
	`)
	if got := r.Serialize(); !bytes.Equal(got, want) {
		t.Errorf("request\n got %x\nwant %x", got, want)
	}
	if r.Len() != len(want) {
		t.Errorf("Len() = %d, want %d", r.Len(), len(want))
	}

	// An IPv6 listener: no remote end, so an unspecified one of its family.
	s = Socket{Proto: UDP, Local: netip.MustParseAddrPort("[fd00::1]:53"), Cookie: 7}
	r, err = destroyReq(s)
	if err != nil {
		t.Fatal(err)
	}
	want = unhex(t, `
		0a 11 00 00 ffffffff     # AF_INET6, IPPROTO_UDP
		0035 0000
		fd000000000000000000000000000001
		00000000000000000000000000000000
		00000000 07000000 00000000
	`)
	if got := r.Serialize(); !bytes.Equal(got, want) {
		t.Errorf("request\n got %x\nwant %x", got, want)
	}

	// A dump asks for no cookie.
	got := dumpReq(afINET6, TCP).Serialize()
	if !bytes.Equal(got[:8], unhex(t, "0a060000ffffffff")) || !bytes.Equal(got[48:], unhex(t, "ffffffffffffffff")) {
		t.Errorf("dump request %x", got)
	}
}

func TestDestroyRequestRefuses(t *testing.T) {
	for _, s := range []Socket{
		{Proto: 132, Local: netip.MustParseAddrPort("10.0.0.1:1")},
		{Proto: TCP},
		{Proto: TCP, Local: netip.MustParseAddrPort("[fd00::1]:1"), Remote: netip.MustParseAddrPort("10.0.0.1:2")},
	} {
		if _, err := destroyReq(s); err == nil {
			t.Errorf("destroyReq(%v) succeeded", s)
		}
	}
}

func TestParseDiagMsg(t *testing.T) {
	// A dual-stack IPv6 socket on an IPv4 flow, with INET_DIAG_SHUTDOWN
	// then INET_DIAG_PROTOCOL attributes, as a destroy notification has.
	msg := unhex(t, `
		0a 01 00 00                          # AF_INET6, ESTABLISHED
		0016 c350
		00000000000000000000ffff0a000001     # ::ffff:10.0.0.1
		00000000000000000000ffff0a000002
		00000000 2a000000 01000000           # if 0, cookie 0x10000002a
		00000000 00000000 00000000           # expires, rqueue, wqueue
		e8030000 39300000                    # uid 1000, inode 12345
		0500 0800 00 000000                  # SHUTDOWN 0, padded
		0500 0a00 11 000000                  # PROTOCOL 17
	`)
	got, err := parseDiagMsg(msg, TCP)
	if err != nil {
		t.Fatal(err)
	}
	want := Socket{
		Proto:  UDP,
		Local:  netip.MustParseAddrPort("10.0.0.1:22"),
		Remote: netip.MustParseAddrPort("10.0.0.2:50000"),
		State:  StateEstablished,
		Cookie: 0x10000002a,
		UID:    1000,
		Inode:  12345,
	}
	if got != want {
		t.Errorf("parse\n got %+v\nwant %+v", got, want)
	}

	// An IPv4 listener, no attributes: the protocol of the request counts,
	// and the remote end is absent.
	msg = unhex(t, `
		02 0a 00 00 0016 0000
		00000000 000000000000000000000000
		00000000 000000000000000000000000
		02000000 01000000 00000000
		00000000 00000000 00000000 00000000 00000000
	`)
	got, err = parseDiagMsg(msg, TCP)
	if err != nil {
		t.Fatal(err)
	}
	want = Socket{Proto: TCP, Local: netip.MustParseAddrPort("0.0.0.0:22"), State: StateListen, Cookie: 1, Interface: 2, Listening: true}
	if got != want {
		t.Errorf("parse\n got %+v\nwant %+v", got, want)
	}

	if _, err := parseDiagMsg(msg[:71], TCP); err == nil {
		t.Error("short message parsed")
	}
	msg[0] = 1 // AF_UNIX
	if _, err := parseDiagMsg(msg, TCP); err == nil {
		t.Error("AF_UNIX message parsed")
	}
}

func TestFindU8AttrMalformed(t *testing.T) {
	for _, b := range [][]byte{
		nil,
		{5, 0},
		{3, 0, 10, 0, 6},         // length below the header
		{9, 0, 10, 0, 6},         // length beyond the buffer
		{4, 0, 10, 0},            // no payload byte
		{5, 0, 8, 0, 1, 0, 0, 0}, // another type only
	} {
		if v, ok := findU8Attr(b, attrProtocol); ok {
			t.Errorf("findU8Attr(%x) = %d, true", b, v)
		}
	}
}

func TestGroupProto(t *testing.T) {
	for g, want := range map[uint32]uint8{1: TCP, 2: UDP, 4: TCP, 8: UDP, 0: 0, 16: 0} {
		if got := groupProto(g); got != want {
			t.Errorf("groupProto(%#x) = %d, want %d", g, got, want)
		}
	}
}

func TestStrings(t *testing.T) {
	s := Socket{Proto: TCP, Local: netip.MustParseAddrPort("10.0.0.1:22"), Remote: netip.MustParseAddrPort("10.0.0.2:5"), State: StateEstablished, Cookie: 42}
	if got, want := s.String(), "tcp 10.0.0.1:22 10.0.0.2:5 ESTABLISHED cookie=0x2a"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	s = Socket{Proto: UDP, Local: netip.MustParseAddrPort("[::]:53"), State: StateClose, Cookie: 1}
	if got, want := (Event{Kind: Closed, Socket: s}).String(), "closed udp [::]:53 CLOSE cookie=0x1"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := StateString(99); got != "STATE(99)" {
		t.Errorf("StateString(99) = %q", got)
	}
	if got := (Event{Kind: Overflow}).String(); got != "overflow" {
		t.Errorf("Overflow String() = %q", got)
	}
}
