package fingerprints

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Meta is what the store keeps about a key beside the key itself.
type Meta struct {
	// Name is a short handle chosen by the administrator ("db1", "alice").
	// Names need not be unique; Resolve accepts a unique one.
	Name string `json:"name,omitempty"`
	// Comment is free text.
	Comment string `json:"comment,omitempty"`
	// Identity is the IKE identity the peer asserts, for peers that are not
	// btnsd hosts; zero means the key's own keyid (charon's default for a
	// raw key).
	Identity Identity `json:"identity,omitzero"`
	Trust    Trust    `json:"trust"`
	// Scope says which BTNS policies accept the key; nil means all.
	Scope   Scope     `json:"scope"`
	Added   time.Time `json:"added"`
	AddedBy Actor     `json:"added_by"`
	// Changed and ChangedBy record the last change of trust or scope.
	Changed   time.Time `json:"changed,omitzero"`
	ChangedBy Actor     `json:"changed_by,omitzero"`
}

// Trust is whether BTNS policies may accept a key at all.
type Trust int

// Trust states. The zero value is Untrusted, so that a key is never trusted
// by omission.
const (
	Untrusted Trust = iota
	Trusted
)

func (t Trust) String() string {
	if t == Trusted {
		return "trusted"
	}
	return "untrusted"
}

// MarshalText returns "trusted" or "untrusted".
func (t Trust) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText accepts "trusted" and "untrusted" only.
func (t *Trust) UnmarshalText(b []byte) error {
	switch string(b) {
	case "trusted":
		*t = Trusted
	case "untrusted":
		*t = Untrusted
	default:
		return fmt.Errorf("trust %q: want trusted or untrusted", b)
	}
	return nil
}

// Scope names the BTNS policies that accept a key. The nil Scope means
// every BTNS policy; otherwise only the policies named (policy files name
// the scope, or scopes, they take keys from).
type Scope []string

// All reports whether the scope takes in every BTNS policy.
func (s Scope) All() bool { return len(s) == 0 }

// Includes reports whether a policy that takes keys of scope name accepts
// a key of this scope.
func (s Scope) Includes(name string) bool { return s.All() || slices.Contains(s, name) }

func (s Scope) String() string {
	if s.All() {
		return "all"
	}
	return strings.Join(s, ",")
}

// ParseScope reads a comma-separated list of scope names; "" and "all" give
// the scope of every policy. Names are sorted and made unique.
func ParseScope(text string) (Scope, error) {
	if text == "" || text == "all" {
		return nil, nil
	}
	return NewScope(strings.Split(text, ","))
}

// NewScope checks scope names (letters, digits, '-', '_', '.'; "all" is
// reserved) and returns them sorted without duplicates; no names give nil.
func NewScope(names []string) (Scope, error) {
	var s Scope
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "all" {
			return nil, fmt.Errorf("scope name %q is reserved: it means every policy", n)
		}
		if !validName(n) {
			return nil, fmt.Errorf("bad scope name %q: use letters, digits, '-', '_' and '.'", n)
		}
		s = append(s, n)
	}
	slices.Sort(s)
	return slices.Compact(s), nil
}

// MarshalJSON writes "all" for every policy, else the list of names.
func (s Scope) MarshalJSON() ([]byte, error) {
	if s.All() {
		return []byte(`"all"`), nil
	}
	return json.Marshal([]string(s))
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *Scope) UnmarshalJSON(b []byte) error {
	var all string
	if err := json.Unmarshal(b, &all); err == nil {
		if all != "all" {
			return fmt.Errorf("scope %q: want \"all\" or a list of names", all)
		}
		*s = nil
		return nil
	}
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return fmt.Errorf("scope: want \"all\" or a list of names")
	}
	v, err := NewScope(names)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

func validName(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// IdentityType is the kind of IKE identity a peer asserts.
type IdentityType string

// The identity types btnsd stores, named by strongSwan's identity prefixes.
const (
	IDFQDN  IdentityType = "fqdn"
	IDIPv4  IdentityType = "ipv4"
	IDIPv6  IdentityType = "ipv6"
	IDKeyID IdentityType = "keyid"
)

// Identity is an IKE identity: an FQDN, an IP address, or a key id (opaque
// bytes, as other IKE implementations may assert for raw keys).
type Identity struct {
	Type IdentityType
	// Value is the FQDN without trailing dot, the address in canonical
	// form, or the key id as lowercase hex.
	Value string
}

// IsZero reports whether no identity is set.
func (id Identity) IsZero() bool { return id == Identity{} }

// String returns the identity in strongSwan's typed syntax, ready for a
// swanctl `id`: "fqdn:host.example.org", "ipv4:192.0.2.1", "ipv6:2001:db8::1",
// "keyid:#0a1b2c".
func (id Identity) String() string {
	switch id.Type {
	case "":
		return ""
	case IDKeyID:
		return "keyid:#" + id.Value
	}
	return string(id.Type) + ":" + id.Value
}

// MarshalText returns String.
func (id Identity) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText accepts what ParseIdentity accepts.
func (id *Identity) UnmarshalText(b []byte) error {
	v, err := ParseIdentity(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ParseIdentity reads an IKE identity as strongSwan writes them: typed
// ("fqdn:", "ipv4:", "ipv6:", "keyid:#<hex>", "keyid:<hex>"), with '@' for an
// FQDN ("@host.example.org") or "@#" for a key id, or bare: an IP address or
// a host name. "" gives the zero Identity. Other kinds (email, DN) are
// refused.
func ParseIdentity(s string) (Identity, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Identity{}, nil
	}
	if rest, ok := trimKeyIDPrefix(s); ok {
		rest = strings.ReplaceAll(rest, ":", "")
		b, err := hex.DecodeString(rest)
		if err != nil || len(b) == 0 || len(b) > 255 {
			return Identity{}, fmt.Errorf("%w: %q: a keyid identity is hex digits, as in keyid:#0a1b2c", ErrBadIdentity, s)
		}
		return Identity{IDKeyID, hex.EncodeToString(b)}, nil
	}
	for _, t := range []IdentityType{IDIPv4, IDIPv6} {
		if rest, ok := cutPrefixFold(s, string(t)+":"); ok {
			a, err := netip.ParseAddr(rest)
			if err != nil || (t == IDIPv4) != a.Unmap().Is4() {
				return Identity{}, fmt.Errorf("%w: %q is not an %s address", ErrBadIdentity, s, t)
			}
			return addrIdentity(a), nil
		}
	}
	name, typed := cutPrefixFold(s, "fqdn:")
	if !typed {
		if a, err := netip.ParseAddr(s); err == nil {
			return addrIdentity(a), nil
		}
		name, typed = strings.CutPrefix(s, "@")
	}
	if !typed && strings.ContainsAny(s, "@=,") {
		return Identity{}, fmt.Errorf("%w: %q: btnsd stores FQDN, IP address and keyid identities only", ErrBadIdentity, s)
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if !validHostname(name) {
		return Identity{}, fmt.Errorf("%w: %q is not a host name", ErrBadIdentity, s)
	}
	return Identity{IDFQDN, name}, nil
}

func addrIdentity(a netip.Addr) Identity {
	a = a.Unmap()
	if a.Is4() {
		return Identity{IDIPv4, a.String()}
	}
	return Identity{IDIPv6, a.String()}
}

func validHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Actor is who changed the store: the Unix user, and the user who ran sudo
// if there was one. It is a record for people, not an access control.
type Actor struct {
	UID      int    `json:"uid"`
	User     string `json:"user,omitempty"`
	SudoUser string `json:"sudo_user,omitempty"`
}

// IsZero reports whether no actor is recorded.
func (a Actor) IsZero() bool { return a == Actor{} }

func (a Actor) String() string {
	s := a.User
	if s == "" {
		s = "uid " + strconv.Itoa(a.UID)
	}
	if a.SudoUser != "" {
		s += " (sudo from " + a.SudoUser + ")"
	}
	return s
}

// CurrentActor describes the user this process runs as. getenv supplies
// SUDO_USER; pass os.Getenv.
func CurrentActor(getenv func(string) string) Actor {
	a := Actor{UID: os.Getuid()}
	if u, err := user.LookupId(strconv.Itoa(a.UID)); err == nil {
		a.User = u.Username
	}
	if su := getenv("SUDO_USER"); su != "" && su != a.User {
		a.SudoUser = su
	}
	return a
}
