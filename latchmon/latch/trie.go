package latch

import (
	"math/bits"
	"net/netip"
)

// trie is a path-compressed binary trie (a PATRICIA trie) from address
// prefixes to values, with one tree per address family. The machine keeps
// two of them: flows by remote address (host prefixes), so that a child SA
// finds the flows its remote traffic selectors cover without scanning every
// latch, and child SAs by remote traffic selector, so that a new flow finds
// the SAs whose selectors contain its remote address.
//
// Prefixes must be masked and hold unmapped addresses (see canonPrefix).
type trie[V any] struct {
	v4, v6 *tnode[V]
	n      int
}

type tnode[V any] struct {
	pfx netip.Prefix
	kid [2]*tnode[V]
	val V
	has bool
}

func (t *trie[V]) root(a netip.Addr) **tnode[V] {
	if a.Is4() {
		return &t.v4
	}
	return &t.v6
}

// addrBit returns bit i (0 is the most significant) of a.
func addrBit(a netip.Addr, i int) int {
	if a.Is4() {
		b := a.As4()
		return int(b[i>>3]>>(7-i&7)) & 1
	}
	b := a.As16()
	return int(b[i>>3]>>(7-i&7)) & 1
}

// commonBits returns the length of the common prefix of a and b, at most max.
func commonBits(a, b netip.Addr, max int) int {
	var x, y [16]byte
	n := 16
	if a.Is4() {
		a4, b4 := a.As4(), b.As4()
		copy(x[:], a4[:])
		copy(y[:], b4[:])
		n = 4
	} else {
		x, y = a.As16(), b.As16()
	}
	c := 0
	for i := 0; i < n; i++ {
		if d := x[i] ^ y[i]; d != 0 {
			c += bits.LeadingZeros8(d)
			break
		}
		c += 8
	}
	return min(c, max)
}

// slot returns the value slot for p, creating it if needed.
func (t *trie[V]) slot(p netip.Prefix) *tnode[V] {
	np := t.root(p.Addr())
	for {
		n := *np
		if n == nil {
			n = &tnode[V]{pfx: p, has: true}
			*np = n
			t.n++
			return n
		}
		if n.pfx == p {
			if !n.has {
				n.has = true
				t.n++
			}
			return n
		}
		nb := n.pfx.Bits()
		if nb < p.Bits() && n.pfx.Contains(p.Addr()) {
			np = &n.kid[addrBit(p.Addr(), nb)]
			continue
		}
		c := commonBits(n.pfx.Addr(), p.Addr(), min(nb, p.Bits()))
		if c == p.Bits() {
			// p is an ancestor of n.
			m := &tnode[V]{pfx: p, has: true}
			m.kid[addrBit(n.pfx.Addr(), c)] = n
			*np = m
			t.n++
			return m
		}
		// p and n are siblings below a new branching node.
		m := &tnode[V]{pfx: netip.PrefixFrom(p.Addr(), c).Masked()}
		leaf := &tnode[V]{pfx: p, has: true}
		m.kid[addrBit(n.pfx.Addr(), c)] = n
		m.kid[addrBit(p.Addr(), c)] = leaf
		*np = m
		t.n++
		return leaf
	}
}

// get returns the value stored at exactly p.
func (t *trie[V]) get(p netip.Prefix) (V, bool) {
	n := *t.root(p.Addr())
	for n != nil {
		if n.pfx == p {
			return n.val, n.has
		}
		nb := n.pfx.Bits()
		if nb >= p.Bits() || !n.pfx.Contains(p.Addr()) {
			break
		}
		n = n.kid[addrBit(p.Addr(), nb)]
	}
	var zero V
	return zero, false
}

// remove deletes the value stored at exactly p.
func (t *trie[V]) remove(p netip.Prefix) {
	t.del(t.root(p.Addr()), p)
}

func (t *trie[V]) del(np **tnode[V], p netip.Prefix) bool {
	n := *np
	if n == nil {
		return false
	}
	if n.pfx == p {
		if !n.has {
			return false
		}
		var zero V
		n.val, n.has = zero, false
		t.n--
		compact(np)
		return true
	}
	nb := n.pfx.Bits()
	if nb >= p.Bits() || !n.pfx.Contains(p.Addr()) {
		return false
	}
	if !t.del(&n.kid[addrBit(p.Addr(), nb)], p) {
		return false
	}
	compact(np)
	return true
}

// compact removes *np if it holds no value and has fewer than two children.
func compact[V any](np **tnode[V]) {
	n := *np
	if n.has {
		return
	}
	switch {
	case n.kid[0] == nil:
		*np = n.kid[1]
	case n.kid[1] == nil:
		*np = n.kid[0]
	}
}

// within calls fn for every value whose prefix lies inside p (p included).
func (t *trie[V]) within(p netip.Prefix, fn func(V)) {
	n := *t.root(p.Addr())
	for n != nil {
		nb := n.pfx.Bits()
		if p.Bits() <= nb && p.Contains(n.pfx.Addr()) {
			walk(n, fn)
			return
		}
		if nb >= p.Bits() || !n.pfx.Contains(p.Addr()) {
			return
		}
		n = n.kid[addrBit(p.Addr(), nb)]
	}
}

func walk[V any](n *tnode[V], fn func(V)) {
	for n != nil {
		if n.has {
			fn(n.val)
		}
		if n.kid[0] != nil && n.kid[1] != nil {
			walk(n.kid[0], fn)
			n = n.kid[1]
			continue
		}
		if n.kid[0] != nil {
			n = n.kid[0]
		} else {
			n = n.kid[1]
		}
	}
}

// containing calls fn for every value whose prefix contains a.
func (t *trie[V]) containing(a netip.Addr, fn func(V)) {
	n := *t.root(a)
	for n != nil && n.pfx.Contains(a) {
		if n.has {
			fn(n.val)
		}
		if n.pfx.Bits() == a.BitLen() {
			return
		}
		n = n.kid[addrBit(a, n.pfx.Bits())]
	}
}

// canonPrefix returns p masked, with an IPv4-mapped IPv6 prefix of 96 bits
// or more turned into its IPv4 form, so that it meets unmapped addresses.
func canonPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}
