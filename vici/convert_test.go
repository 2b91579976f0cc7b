package vici

import (
	"testing"

	govici "github.com/strongswan/govici/vici"
)

func sampleMsg() *Msg {
	child := NewMsg()
	child.Set("local_ts", []string{"10.0.0.0/24", "fd00::/64"})
	child.Set("mode", "tunnel")
	children := NewMsg()
	children.Set("c1", child)
	conn := NewMsg()
	conn.Set("version", "2")
	conn.Set("remote_addrs", []string{"%any"})
	conn.Set("empty", []string{})
	conn.Set("children", children)
	conn.Set("data", "\x00\x01binary\xff")
	m := NewMsg()
	m.Set("zeta", "last-alphabetically-first-in-order")
	m.Set("conn", conn)
	m.Set("alpha", "x")
	return m
}

func TestGoviciRoundTrip(t *testing.T) {
	in := sampleMsg()
	g := toGovici(in)
	if got, want := g.Keys(), []string{"zeta", "conn", "alpha"}; !equalStrings(got, want) {
		t.Fatalf("govici keys = %v, want %v", got, want)
	}
	sub, ok := g.Get("conn").(*govici.Message)
	if !ok {
		t.Fatalf("conn is %T, want *govici.Message", g.Get("conn"))
	}
	if got, want := sub.Keys(), []string{"version", "remote_addrs", "empty", "children", "data"}; !equalStrings(got, want) {
		t.Fatalf("nested keys = %v, want %v", got, want)
	}
	out := fromGovici(g)
	if !in.Equal(out) {
		t.Fatalf("round trip differs:\nin:\n%s\nout:\n%s", in.Format(), out.Format())
	}
	if fromGovici(nil).Len() != 0 || len(toGovici(nil).Keys()) != 0 {
		t.Fatal("nil messages should convert to empty ones")
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// BenchmarkLoadConnMsg measures building the govici message of a typical
// BTNS connection (one pinned key, one child), the per-connection work
// LoadConn adds on top of the socket round trip.
func BenchmarkLoadConnMsg(b *testing.B) {
	key := string(make([]byte, 44))
	conn := msgOf(
		"version", "2", "remote_addrs", []string{"%any"}, "unique", "never",
		"local", msgOf("auth", "pubkey", "pubkeys", []string{key}),
		"remote", msgOf("auth", "pubkey", "pubkeys", []string{key}, "id", "keyid:#a501103982..."),
		"children", msgOf("c", msgOf("local_ts", []string{"dynamic"}, "remote_ts", []string{"dynamic"}, "mode", "transport")),
	)
	b.ReportAllocs()
	for b.Loop() {
		_ = toGovici(LoadConnMsg("btns-0123456789abcdef", conn))
	}
}
