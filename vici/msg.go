package vici

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Msg is an ordered VICI message section: the body of a command, a response
// or an event, independent of the wire. Values are string, []string or *Msg.
//
// Msg exists so that the packages above vici (configs, btnsauth, latchmon)
// can build and inspect messages without importing govici, and so that tests
// can compare messages structurally. A Msg is not safe for concurrent
// mutation.
type Msg struct {
	keys []string
	vals map[string]any
}

// NewMsg returns an empty message.
func NewMsg() *Msg { return &Msg{vals: make(map[string]any)} }

// Set sets key to v, which must be a string, []string or *Msg. Setting an
// existing key replaces its value and keeps its position.
func (m *Msg) Set(key string, v any) {
	switch v.(type) {
	case string, []string, *Msg:
	default:
		panic(fmt.Sprintf("vici: Msg.Set(%q): unsupported value type %T", key, v))
	}
	if m.vals == nil {
		m.vals = make(map[string]any)
	}
	if _, ok := m.vals[key]; !ok {
		m.keys = append(m.keys, key)
	}
	m.vals[key] = v
}

// Delete removes key; it is a no-op when key is absent.
func (m *Msg) Delete(key string) {
	if _, ok := m.vals[key]; !ok {
		return
	}
	delete(m.vals, key)
	m.keys = slices.DeleteFunc(m.keys, func(k string) bool { return k == key })
}

// Get returns the value of key (string, []string or *Msg), or nil.
func (m *Msg) Get(key string) any {
	if m == nil {
		return nil
	}
	return m.vals[key]
}

// String returns the value of key if it is a string, else "".
func (m *Msg) String(key string) string {
	s, _ := m.Get(key).(string)
	return s
}

// List returns the value of key if it is a list, else nil.
func (m *Msg) List(key string) []string {
	l, _ := m.Get(key).([]string)
	return l
}

// Section returns the value of key if it is a section, else nil.
func (m *Msg) Section(key string) *Msg {
	s, _ := m.Get(key).(*Msg)
	return s
}

// Keys returns the keys in order.
func (m *Msg) Keys() []string {
	if m == nil {
		return nil
	}
	return slices.Clone(m.keys)
}

// Len returns the number of keys.
func (m *Msg) Len() int {
	if m == nil {
		return 0
	}
	return len(m.keys)
}

// Clone returns a deep copy of m.
func (m *Msg) Clone() *Msg {
	if m == nil {
		return nil
	}
	c := &Msg{keys: slices.Clone(m.keys), vals: make(map[string]any, len(m.vals))}
	for k, v := range m.vals {
		switch v := v.(type) {
		case []string:
			c.vals[k] = slices.Clone(v)
		case *Msg:
			c.vals[k] = v.Clone()
		default:
			c.vals[k] = v
		}
	}
	return c
}

// Equal reports whether m and o hold the same keys in the same order with
// equal values.
func (m *Msg) Equal(o *Msg) bool {
	if m.Len() != o.Len() {
		return false
	}
	if m.Len() == 0 {
		return true
	}
	if !slices.Equal(m.keys, o.keys) {
		return false
	}
	for _, k := range m.keys {
		switch a := m.vals[k].(type) {
		case string:
			b, ok := o.vals[k].(string)
			if !ok || a != b {
				return false
			}
		case []string:
			b, ok := o.vals[k].([]string)
			if !ok || !slices.Equal(a, b) {
				return false
			}
		case *Msg:
			b, ok := o.vals[k].(*Msg)
			if !ok || !a.Equal(b) {
				return false
			}
		}
	}
	return true
}

// MarshalJSON encodes m as a JSON object with its keys in order.
func (m *Msg) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range m.Keys() {
		if i > 0 {
			b.WriteByte(',')
		}
		kj, _ := json.Marshal(k)
		b.Write(kj)
		b.WriteByte(':')
		vj, err := json.Marshal(m.vals[k])
		if err != nil {
			return nil, err
		}
		b.Write(vj)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON decodes a JSON object into m, keeping key order. Strings,
// arrays of strings and objects are accepted; numbers and booleans are kept
// as their JSON text, as charon sends every value as a string.
func (m *Msg) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("vici: message JSON must be an object, got %v", t)
	}
	*m = Msg{vals: make(map[string]any)}
	return m.decodeJSONObject(dec)
}

func (m *Msg) decodeJSONObject(dec *json.Decoder) error {
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		key := t.(string)
		v, err := decodeJSONValue(dec)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		m.Set(key, v)
	}
	_, err := dec.Token() // '}'
	return err
}

func decodeJSONValue(dec *json.Decoder) (any, error) {
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := t.(type) {
	case json.Delim:
		switch t {
		case '{':
			sub := NewMsg()
			return sub, sub.decodeJSONObject(dec)
		case '[':
			list := []string{}
			for dec.More() {
				e, err := dec.Token()
				if err != nil {
					return nil, err
				}
				list = append(list, scalarString(e))
			}
			_, err := dec.Token() // ']'
			return list, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	default:
		return scalarString(t), nil
	}
}

func scalarString(t any) string {
	switch t := t.(type) {
	case string:
		return t
	case json.Number:
		return t.String()
	case bool:
		if t {
			return "yes"
		}
		return "no"
	case nil:
		return ""
	}
	return fmt.Sprint(t)
}

// Format renders m in the indented form swanctl prints, for logs and test
// failure messages.
func (m *Msg) Format() string {
	var b strings.Builder
	m.format(&b, "")
	return b.String()
}

func (m *Msg) format(b *strings.Builder, indent string) {
	for _, k := range m.Keys() {
		switch v := m.vals[k].(type) {
		case string:
			fmt.Fprintf(b, "%s%s = %s\n", indent, k, v)
		case []string:
			fmt.Fprintf(b, "%s%s = [%s]\n", indent, k, strings.Join(v, ", "))
		case *Msg:
			fmt.Fprintf(b, "%s%s {\n", indent, k)
			v.format(b, indent+"  ")
			fmt.Fprintf(b, "%s}\n", indent)
		}
	}
}
