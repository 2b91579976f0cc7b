package latch

import (
	"fmt"
	"net/netip"
	"slices"
)

// check verifies the machine's invariants by brute force: every latch is in
// the state its bindings give, every binding is recorded on both sides, and
// every child SA that covers a latched flow is bound to it or conflicts
// with it (RFC 5660 2.3), and the indexes agree with the records.
func (m *Machine) check() error {
	if len(m.touched) != 0 {
		return fmt.Errorf("%d latches touched outside a step", len(m.touched))
	}
	for id, r := range m.latches {
		if r.id != id {
			return fmt.Errorf("latch %d indexed as %d", r.id, id)
		}
		if s := r.compute(); s != r.state {
			return fmt.Errorf("latch %d in %v, its bindings say %v", id, r.state, s)
		}
		if r.listener {
			if m.listeners[r.endpoint()] != r {
				return fmt.Errorf("listener latch %d not indexed", id)
			}
			if len(r.bound)+len(r.conflicts) > 0 {
				return fmt.Errorf("listener latch %d bound to SAs", id)
			}
			continue
		}
		if m.flows[r.tuple] != r {
			return fmt.Errorf("latch %d not indexed by tuple", id)
		}
		if r.lost && len(r.bound) > 0 {
			return fmt.Errorf("latch %d lost with SAs %v", id, r.info().SAs)
		}
		if hasDup(r.bound) || hasDup(r.conflicts) {
			return fmt.Errorf("latch %d: child SA recorded twice", id)
		}
		for _, c := range r.bound {
			if _, ok := c.latches[r]; !ok || m.children[c.id] != c || !r.congruent(c) || !covers(c.local, c.remote, r.tuple) {
				return fmt.Errorf("latch %d: bad binding to child SA %d", id, c.id)
			}
		}
		for _, c := range r.conflicts {
			if _, ok := c.conflicts[r]; !ok || m.children[c.id] != c || r.congruent(c) || !covers(c.local, c.remote, r.tuple) {
				return fmt.Errorf("latch %d: bad conflict with child SA %d", id, c.id)
			}
		}
		for _, c := range m.children {
			in := slices.Contains(r.bound, c) || slices.Contains(r.conflicts, c)
			if in != covers(c.local, c.remote, r.tuple) {
				return fmt.Errorf("latch %d and child SA %d: recorded %v, covers %v", id, c.id, in, !in)
			}
		}
	}
	for t, f := range m.flows {
		if f.tuple != t || f.listener {
			return fmt.Errorf("flow %v indexed as %v", f.tuple, t)
		}
		if f.id != 0 && m.latches[f.id] != f {
			return fmt.Errorf("flow %v has latch %d not in the LD", t, f.id)
		}
		a := t.Remote.Addr()
		b, ok := m.flowTrie.get(netip.PrefixFrom(a, a.BitLen()))
		if !ok || f.bucket != b || b.recs[f.bpos] != f {
			return fmt.Errorf("flow %v not in its bucket", t)
		}
	}
	nrecs := 0
	m.flowTrie.within(netip.MustParsePrefix("0.0.0.0/0"), func(b *bucket) { nrecs += len(b.recs) })
	m.flowTrie.within(netip.MustParsePrefix("::/0"), func(b *bucket) { nrecs += len(b.recs) })
	if nrecs != len(m.flows) {
		return fmt.Errorf("%d flows in buckets, %d in the map", nrecs, len(m.flows))
	}
	for e, l := range m.listeners {
		if !l.listener || l.endpoint() != e || l.id != 0 && m.latches[l.id] != l {
			return fmt.Errorf("listener %v badly indexed", e)
		}
	}
	nsets := 0
	for id, c := range m.children {
		if c.id != id || m.ikes[c.ike.ID] != c.ike || c.ike.children[id] != c {
			return fmt.Errorf("child SA %d badly indexed", id)
		}
		for f := range c.latches {
			if m.latches[f.id] != f || !slices.Contains(f.bound, c) {
				return fmt.Errorf("child SA %d: stale latch %d", id, f.id)
			}
		}
		for f := range c.conflicts {
			if m.latches[f.id] != f || !slices.Contains(f.conflicts, c) {
				return fmt.Errorf("child SA %d: stale conflict %d", id, f.id)
			}
		}
		for i, s := range c.remote {
			if slices.ContainsFunc(c.remote[:i], func(o Selector) bool { return o.Prefix == s.Prefix }) {
				continue
			}
			nsets++
			set, ok := m.saTrie.get(s.Prefix)
			if !ok || !slices.Contains(set.cs, c) {
				return fmt.Errorf("child SA %d not indexed under %v", id, s.Prefix)
			}
		}
	}
	n := 0
	m.saTrie.within(netip.MustParsePrefix("0.0.0.0/0"), func(s *saSet) { n += len(s.cs) })
	m.saTrie.within(netip.MustParsePrefix("::/0"), func(s *saSet) { n += len(s.cs) })
	if n != nsets {
		return fmt.Errorf("%d child SA entries in the trie, want %d", n, nsets)
	}
	for id, r := range m.ikes {
		if r.ID != id {
			return fmt.Errorf("IKE SA %d indexed as %d", r.ID, id)
		}
	}
	return nil
}

func hasDup[T comparable](s []T) bool {
	seen := map[T]bool{}
	for _, x := range s {
		if seen[x] {
			return true
		}
		seen[x] = true
	}
	return false
}
