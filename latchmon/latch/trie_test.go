package latch

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestTrie checks the prefix trie against a brute-force list: random
// inserts and removals in both families, then within and containing queries.
func TestTrie(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	randPrefix := func() netip.Prefix {
		if r.IntN(2) == 0 {
			// A small address space so that prefixes nest and collide.
			a := netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(4)), byte(r.IntN(8))})
			return netip.PrefixFrom(a, r.IntN(33)).Masked()
		}
		var b [16]byte
		b[0], b[1], b[15] = 0xfd, byte(r.IntN(4)), byte(r.IntN(8))
		return netip.PrefixFrom(netip.AddrFrom16(b), r.IntN(129)).Masked()
	}
	var tr trie[netip.Prefix]
	ref := map[netip.Prefix]bool{}
	for i := 0; i < 2000; i++ {
		p := randPrefix()
		if r.IntN(3) == 0 {
			tr.remove(p)
			delete(ref, p)
		} else {
			tr.slot(p).val = p
			ref[p] = true
		}
		if tr.n != len(ref) {
			t.Fatalf("step %d: n = %d, want %d", i, tr.n, len(ref))
		}
		q := randPrefix()
		var got, want []netip.Prefix
		tr.within(q, func(v netip.Prefix) { got = append(got, v) })
		for p := range ref {
			if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
				want = append(want, p)
			}
		}
		sortPrefixes(got)
		sortPrefixes(want)
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Fatalf("step %d: within(%v) (-want +got):\n%s", i, q, diff)
		}
		got, want = nil, nil
		tr.containing(q.Addr(), func(v netip.Prefix) { got = append(got, v) })
		for p := range ref {
			if p.Contains(q.Addr()) {
				want = append(want, p)
			}
		}
		sortPrefixes(got)
		sortPrefixes(want)
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Fatalf("step %d: containing(%v) (-want +got):\n%s", i, q.Addr(), diff)
		}
		if _, ok := tr.get(q); ok != ref[q] {
			t.Fatalf("step %d: get(%v) = %v, want %v", i, q, ok, ref[q])
		}
	}
}

func sortPrefixes(ps []netip.Prefix) {
	slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr())*256 + a.Bits() - b.Bits() })
}
