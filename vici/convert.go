package vici

import (
	govici "github.com/strongswan/govici/vici"
)

// toGovici converts m into a govici message, keeping key order, recursively.
// It builds the message with NewMessage and Set (no reflection over structs),
// so loading many connections costs little more than copying the tree.
// A nil m gives an empty message.
func toGovici(m *Msg) *govici.Message {
	g := govici.NewMessage()
	if m == nil {
		return g
	}
	for _, k := range m.keys {
		switch v := m.vals[k].(type) {
		case string:
			_ = g.Set(k, v) // Set only fails on unsupported types.
		case []string:
			if v == nil {
				v = []string{}
			}
			_ = g.Set(k, v)
		case *Msg:
			_ = g.Set(k, toGovici(v))
		}
	}
	return g
}

// fromGovici converts a govici message into a Msg, keeping key order,
// recursively. A nil g gives an empty Msg.
func fromGovici(g *govici.Message) *Msg {
	m := NewMsg()
	if g == nil {
		return m
	}
	keys := g.Keys()
	m.keys = make([]string, 0, len(keys))
	for _, k := range keys {
		switch v := g.Get(k).(type) {
		case string:
			m.Set(k, v)
		case []string:
			m.Set(k, v)
		case *govici.Message:
			m.Set(k, fromGovici(v))
		}
	}
	return m
}
