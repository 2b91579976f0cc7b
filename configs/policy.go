package configs

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/btnsd/btnsd/fingerprints"
	"github.com/btnsd/btnsd/vici"
)

// btnsSection is the name of the section that holds btnsd's own settings,
// in a connection and in each of its children. See doc.go.
const btnsSection = "btns"

// Policy is btnsd's view of one connection: the settings of its btns
// sections, validated, with defaults applied. A connection without a btns
// section (or with enabled = no) has Enabled false and is loaded into
// charon exactly as swanctl would load it.
type Policy struct {
	// Enabled is btns.enabled: btnsd expands the connection into the
	// BTNS connections it owns (the PAD) instead of loading it as is.
	Enabled bool `json:"enabled"`
	// Peers is btns.peers: which trusted keys the connection accepts.
	Peers Peers `json:"peers"`
	// Anonymous is btns.anonymous: also accept unknown peers with the
	// publicly known PSK (RFC 5387 stand-alone BTNS).
	Anonymous bool `json:"anonymous"`
	// MaxSAs and MaxSAsPerAddr are btns.max_sas and
	// btns.max_sas_per_addr: limits on the IKE SAs of the connection, in
	// all and per remote address; 0 means no limit.
	MaxSAs        int `json:"max_sas,omitempty"`
	MaxSAsPerAddr int `json:"max_sas_per_addr,omitempty"`
	// Local is btns.local: the local authentication.
	Local LocalAuth `json:"local"`
	// Children holds every child of the connection, in order, with its
	// latching settings.
	Children []ChildPolicy `json:"children,omitempty"`
}

// Child returns the policy of the child name, or nil.
func (p *Policy) Child(name string) *ChildPolicy {
	for i := range p.Children {
		if p.Children[i].Name == name {
			return &p.Children[i]
		}
	}
	return nil
}

// ChildPolicy is the btns section of one child.
type ChildPolicy struct {
	Name string `json:"name"`
	// Latch is btns.latch: latch the flows this child protects
	// (RFC 5660). Default: yes in a BTNS connection, no otherwise.
	Latch bool `json:"latch"`
	// OnBreak is btns.on_break: what to do with a latched flow whose
	// latch breaks. Default: reset.
	OnBreak Disposition `json:"on_break"`
}

// Disposition is what btnsd does with a flow whose latch is BROKEN
// (RFC 5660 5.5).
type Disposition string

const (
	// Reset destroys the flow's socket (and alerts).
	Reset Disposition = "reset"
	// Notify only alerts.
	Notify Disposition = "notify"
)

// LocalAuth is how a BTNS connection authenticates the local side.
type LocalAuth string

const (
	// LocalHostKey: btnsd's host key (the default); the connection must
	// have no local sections of its own.
	LocalHostKey LocalAuth = "hostkey"
	// LocalConfig: the connection's own local sections, as written (a
	// certificate, a PSK...), for the asymmetric modes of RFC 5387.
	LocalConfig LocalAuth = "config"
)

// PeersMode says which trusted keys a connection accepts.
type PeersMode string

const (
	PeersAll   PeersMode = "all"   // every trusted key (the default)
	PeersNone  PeersMode = "none"  // no trusted key (anonymous peers only)
	PeersList  PeersMode = "list"  // the keys listed by fingerprint
	PeersScope PeersMode = "scope" // the trusted keys of a named scope
)

// Peers is the value of btns.peers.
type Peers struct {
	Mode         PeersMode
	Fingerprints []fingerprints.Fingerprint // for PeersList, in the order given, no duplicates
	Scope        string                     // for PeersScope
}

// String returns the value in the syntax of the policy file.
func (p Peers) String() string {
	switch p.Mode {
	case PeersList:
		s := make([]string, len(p.Fingerprints))
		for i, f := range p.Fingerprints {
			s[i] = f.String()
		}
		return strings.Join(s, ", ")
	case PeersScope:
		return "scope:" + p.Scope
	}
	return string(p.Mode)
}

// MarshalText returns p.String().
func (p Peers) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// parseBool accepts what strongSwan accepts (settings_value_as_bool and
// charon's vici parse_bool), in any case.
func parseBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "yes", "true", "enabled", "1":
		return true, true
	case "no", "false", "disabled", "0":
		return false, true
	}
	return false, false
}

// The keys of a btns section; the order is the one used in messages.
var (
	connKeys  = []string{"enabled", "peers", "anonymous", "max_sas", "max_sas_per_addr", "local"}
	childKeys = []string{"latch", "on_break"}
)

func isOneOf(k string, keys []string) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

// policy extracts and checks the btnsd settings of connection conn.
func (m *mapper) policy(name string, at Pos, body *vici.Msg) Policy {
	cp := []string{"connections", name}
	pol := Policy{Peers: Peers{Mode: PeersAll}, Local: LocalHostKey}
	where := fmt.Sprintf("connection %q", name)

	m.strayBtns(body, cp, 0)

	var btnsAt Pos
	if s := m.btns(cp, where, connKeys, childKeys); s != nil {
		btnsAt = s.Pos
	}
	for _, kv := range m.v.keys(append(cp[:2:2], btnsSection)) {
		bad := func(expected string) {
			m.errorf(kv.ValuePos, "invalid value %q for btns.%s in %s: expected %s", kv.Value, kv.Key, where, expected)
		}
		switch kv.Key {
		case "enabled":
			b, ok := parseBool(kv.Value)
			if !ok {
				bad("yes or no")
			}
			pol.Enabled = b
		case "anonymous":
			b, ok := parseBool(kv.Value)
			if !ok {
				bad("yes or no")
			}
			pol.Anonymous = b
		case "max_sas", "max_sas_per_addr":
			n, err := strconv.ParseUint(kv.Value, 10, 31)
			if err != nil || n == 0 {
				bad(fmt.Sprintf("a whole number from 1 to %d (leave the key out for no limit)", math.MaxInt32))
			}
			if kv.Key == "max_sas" {
				pol.MaxSAs = int(n)
			} else {
				pol.MaxSAsPerAddr = int(n)
			}
		case "local":
			switch LocalAuth(strings.ToLower(kv.Value)) {
			case LocalHostKey:
				pol.Local = LocalHostKey
			case LocalConfig:
				pol.Local = LocalConfig
			default:
				bad("hostkey (btnsd's host key) or config (the connection's local sections)")
			}
		case "peers":
			p, err := parsePeers(kv.Value)
			if err != nil {
				m.errorf(kv.ValuePos, "invalid value %q for btns.peers in %s: %v", kv.Value, where, err)
			}
			pol.Peers = p
		}
	}

	for _, child := range m.v.subsections(append(cp[:2:2], "children")) {
		chp := []string{"connections", name, "children", child.Name}
		cwhere := fmt.Sprintf("child %q of connection %q", child.Name, name)
		c := ChildPolicy{Name: child.Name, Latch: pol.Enabled, OnBreak: Reset}
		m.btns(chp, cwhere, childKeys, connKeys)
		for _, kv := range m.v.keys(append(chp, btnsSection)) {
			switch kv.Key {
			case "latch":
				b, ok := parseBool(kv.Value)
				if !ok {
					m.errorf(kv.ValuePos, "invalid value %q for btns.latch in %s: expected yes or no", kv.Value, cwhere)
				}
				c.Latch = b
			case "on_break":
				switch Disposition(strings.ToLower(kv.Value)) {
				case Reset:
					c.OnBreak = Reset
				case Notify:
					c.OnBreak = Notify
				default:
					m.errorf(kv.ValuePos, "invalid value %q for btns.on_break in %s: expected reset (destroy the socket) or notify (alert only)", kv.Value, cwhere)
				}
			}
		}
		pol.Children = append(pol.Children, c)
	}

	if pol.Enabled {
		var locals []*Section
		for _, s := range m.v.subsections(cp) {
			if len(s.Name) >= 5 && strings.EqualFold(s.Name[:5], "local") {
				locals = append(locals, s)
			}
		}
		switch {
		case pol.Local == LocalHostKey && len(locals) > 0:
			m.errorf(locals[0].Pos, "%s is a BTNS connection authenticated with btnsd's host key, but has its own section %q; remove it, or set btns { local = config } to use it", where, locals[0].Name)
		case pol.Local == LocalConfig && len(locals) == 0:
			m.errorf(m.keyPos(cp, "local", btnsAt, at), "%s has btns.local = config but no local section to take the local authentication from", where)
		}
		if pol.Peers.Mode == PeersNone && !pol.Anonymous {
			m.errorf(m.keyPos(cp, "peers", btnsAt, at), "%s accepts no peer: btns.peers = none needs btns.anonymous = yes", where)
		}
	}
	return pol
}

// keyPos returns the position of btns.key of cp, else of the btns section,
// else of the connection.
func (m *mapper) keyPos(cp []string, key string, btnsAt, connAt Pos) Pos {
	if kv := m.v.value(append(cp[:len(cp):len(cp)], btnsSection), key); kv != nil {
		return kv.Pos
	}
	if btnsAt.IsValid() {
		return btnsAt
	}
	return connAt
}

// btns checks the btns section below p (if any) for unknown keys and
// subsections, and a "btns" key standing for the section. It returns the
// first definition of the section.
func (m *mapper) btns(p []string, where string, known, other []string) *Section {
	if kv := m.v.value(p, btnsSection); kv != nil {
		m.errorf(kv.Pos, "btns in %s is a key; btnsd's settings go into a section: btns { ... }", where)
	}
	var first *Section
	for _, s := range m.v.subsections(p) {
		if s.Name == btnsSection {
			first = s
		}
	}
	if first == nil {
		return nil
	}
	bp := append(p[:len(p):len(p)], btnsSection)
	for _, kv := range m.v.keys(bp) {
		switch {
		case isOneOf(kv.Key, known):
		case isOneOf(kv.Key, other):
			if isOneOf(kv.Key, childKeys) {
				m.errorf(kv.Pos, "btns.%s is a child setting, not allowed in %s: put it into children.<child>.btns", kv.Key, where)
			} else {
				m.errorf(kv.Pos, "btns.%s is a connection setting, not allowed in %s: put it into the connection's btns section", kv.Key, where)
			}
		default:
			m.errorf(kv.Pos, "unknown key btns.%s in %s (known: %s)", kv.Key, where, strings.Join(known, ", "))
		}
	}
	for _, s := range m.v.subsections(bp) {
		m.errorf(s.Pos, "unexpected section %q in the btns section of %s: btns holds only settings", s.Name, where)
	}
	return first
}

// strayBtns reports btns sections anywhere but in a connection and in its
// children (level counts the sections below the connection). A child may
// itself be named btns. It walks the mapped body, whose size VICI's limit
// bounds, rather than the settings tree, which references can make
// endless.
func (m *mapper) strayBtns(msg *vici.Msg, p []string, level int) {
	for _, name := range msg.Keys() {
		sub := msg.Section(name)
		if sub == nil {
			continue
		}
		childName := level == 1 && p[len(p)-1] == "children"
		if name == btnsSection && !childName {
			allowed := level == 0 || (level == 2 && p[len(p)-2] == "children")
			if !allowed {
				m.errorf(m.sectionPos(p, name), "a btns section belongs in a connection or in one of its children, not in %s", strings.Join(p, "."))
			}
			continue // btns() checks its contents
		}
		m.strayBtns(sub, append(p[:len(p):len(p)], name), level+1)
	}
}

// sectionPos returns where the subsection name of p is first defined.
func (m *mapper) sectionPos(p []string, name string) Pos {
	for _, s := range m.v.subsections(p) {
		if s.Name == name {
			return s.Pos
		}
	}
	return Pos{File: m.v.root.Pos.File}
}

// strip removes btnsd's sections from a connection body.
func strip(body *vici.Msg) *vici.Msg {
	body = body.Clone()
	body.Delete(btnsSection)
	if ch := body.Section("children"); ch != nil {
		for _, name := range ch.Keys() {
			if c := ch.Section(name); c != nil {
				c.Delete(btnsSection)
			}
		}
	}
	return body
}

// parsePeers parses the value of btns.peers.
func parsePeers(v string) (Peers, error) {
	s := strings.TrimSpace(v)
	switch strings.ToLower(s) {
	case "all":
		return Peers{Mode: PeersAll}, nil
	case "none":
		return Peers{Mode: PeersNone}, nil
	case "":
		return Peers{Mode: PeersAll}, fmt.Errorf("expected all, none, scope:<name> or a list of fingerprints")
	}
	if len(s) >= 6 && strings.EqualFold(s[:6], "scope:") {
		name := s[6:]
		if name == "" || strings.ContainsFunc(name, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
		}) {
			return Peers{Mode: PeersAll}, fmt.Errorf("scope name %q must be letters, digits, '-', '_' or '.'", name)
		}
		return Peers{Mode: PeersScope, Scope: name}, nil
	}
	p := Peers{Mode: PeersList}
	for _, tok := range strings.Split(s, ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			return Peers{Mode: PeersAll}, fmt.Errorf("empty element in the list of fingerprints")
		}
		switch l := strings.ToLower(tok); {
		case l == "all" || l == "none" || strings.HasPrefix(l, "scope:"):
			return Peers{Mode: PeersAll}, fmt.Errorf("%s cannot be combined with other values", tok)
		}
		f, err := fingerprints.ParseFingerprint(tok)
		if err != nil {
			return Peers{Mode: PeersAll}, err
		}
		dup := false
		for _, g := range p.Fingerprints {
			if f == g {
				dup = true
			}
		}
		if dup {
			return Peers{Mode: PeersAll}, fmt.Errorf("fingerprint %s is listed twice", tok)
		}
		p.Fingerprints = append(p.Fingerprints, f)
	}
	return p, nil
}
