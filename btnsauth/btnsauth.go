// Package btnsauth turns BTNS policies and the trusted keys of the key
// store into the charon connections that implement BTNS's peer
// authorization database (PAD) on strongSwan 5.9.8. It is pure: it does no
// I/O, keeps no state, and the same input always gives the same output.
//
// strongSwan cannot accept a key it has never seen, nor NULL
// authentication, so the PAD is expanded as follows (DESIGN.md, "BTNS on
// strongSwan: the PAD"):
//
//   - one connection per trusted key the policy accepts, with the key pinned
//     (remote pubkeys) and the key's identity as remote id: charon's keyid
//     (keyid:#<SHA-1 of the SubjectPublicKeyInfo>) or the IKE identity stored
//     with the key for peers that assert another one. remote_addrs defaults
//     to %any: the peer is its key, whatever its address.
//   - with anonymous peers on, one connection that authenticates peers with a
//     publicly known pre-shared key (RFC 5387's stand-alone BTNS), with
//     unique = never so that an anonymous peer's INITIAL_CONTACT can never
//     delete another peer's IKE SA, and remote id %any, which proves nothing
//     and is never used as an identity.
//   - the local side uses the host's own raw key unless the policy gives its
//     own local authentication (RFC 5387's asymmetric modes).
//
// Every connection btnsd loads is named with the Prefix; btnsd never
// touches a connection whose name lacks it.
package btnsauth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/btnsd/btnsd/vici"
)

// Prefix starts the name of every charon connection btnsd owns.
const Prefix = "btns."

// AnonymousPSK is the publicly known pre-shared key of anonymous BTNS
// peers. It is public by design: it authenticates nobody, it only lets two
// hosts that have never met set up an SA that passive attackers cannot
// read. It is 32 bytes or more, since shorter PSKs trip FIPS checks in
// other IKE implementations.
const AnonymousPSK = "btns-anonymous-ipsec-better-than-nothing-security"

// AnonymousID is the local identity of btnsd's anonymous connections, and
// the only owner of the public PSK. Tying the secret to this identity keeps
// it away from every other PSK connection of the host: charon only offers it
// where the local identity is AnonymousID.
const AnonymousID = "@btns-anonymous"

// AnonymousSecretID is the VICI id under which the public PSK is loaded.
const AnonymousSecretID = Prefix + "anonymous-psk"

// Owned reports whether btnsd owns the charon connection called name.
func Owned(name string) bool { return strings.HasPrefix(name, Prefix) }

// Key is a public key of the key store, as the PAD needs it.
type Key struct {
	// Fingerprint is the SHA-256 of the SubjectPublicKeyInfo, lowercase hex.
	Fingerprint string
	// KeyID is charon's key identity, the SHA-1 of the SubjectPublicKeyInfo,
	// lowercase hex without colons.
	KeyID string
	// PEM is the public key (SubjectPublicKeyInfo) in PEM, as charon takes
	// it in pubkeys.
	PEM []byte
	// Identity is the IKE identity the peer asserts, when it is not its
	// keyid (peers that are not btnsd hosts); empty for keyid.
	Identity string
	// Trusted reports whether the key may authenticate peers.
	Trusted bool
	// Scopes names the scopes the key is valid in; none means every BTNS
	// policy.
	Scopes []string
}

// Peers says which trusted keys a policy accepts.
type Peers struct {
	// All accepts every trusted key that has no scope (a key valid for
	// every BTNS policy).
	All bool
	// Scope accepts the trusted keys valid in this scope: those of the
	// scope and those that have no scope.
	Scope string
	// Fingerprints accepts exactly these keys (hex), if trusted, whatever
	// their scope.
	Fingerprints []string
}

// LocalAuth says how the host authenticates itself.
type LocalAuth int

const (
	// LocalHostKey authenticates with btnsd's host key (the default).
	LocalHostKey LocalAuth = iota
	// LocalConfig keeps the policy's own local sections (a certificate, a
	// PSK...): RFC 5387's asymmetric modes.
	LocalConfig
)

// Policy is one BTNS-flagged connection of a policy file.
type Policy struct {
	// Name is the connection's name in the policy file.
	Name string
	// Body is the load-conn body swanctl would send for the connection,
	// without btnsd's keys.
	Body *vici.Msg
	// Peers selects the trusted keys.
	Peers Peers
	// Anonymous accepts unknown peers with the public PSK.
	Anonymous bool
	// Local selects the local authentication.
	Local LocalAuth
}

// HostKey is this host's public key.
type HostKey struct {
	PEM []byte
}

// Conn is one charon connection of the expanded PAD.
type Conn struct {
	// Name is the charon connection name (starts with Prefix).
	Name string
	// Policy is the policy connection it comes from.
	Policy string
	// Peer is the fingerprint (hex) of the pinned key; empty for the
	// anonymous connection.
	Peer string
	// Anonymous marks the public-PSK connection.
	Anonymous bool
	// Body is the load-conn body.
	Body *vici.Msg
}

// Secret is a shared secret to load with load-shared.
type Secret struct {
	ID     string
	Type   string
	Data   []byte
	Owners []string
}

// AnonymousSecret is the shared secret anonymous connections need.
func AnonymousSecret() Secret {
	return Secret{ID: AnonymousSecretID, Type: "IKE", Data: []byte(AnonymousPSK), Owners: []string{AnonymousID}}
}

// ConnName is the charon name of the connection of policy for peer (a
// fingerprint in hex), or of its anonymous connection when peer is "".
// Sixteen hex digits (64 bits) of the fingerprint keep names short and
// unique among the keys of one host.
func ConnName(policy, peer string) string {
	if peer == "" {
		return Prefix + policy + ".anon"
	}
	if len(peer) > 16 {
		peer = peer[:16]
	}
	return Prefix + policy + "." + peer
}

// ErrPolicy is wrapped by every error about a policy's content.
var ErrPolicy = errors.New("btnsauth: invalid BTNS policy")

// keys of a remote round that btnsd owns in a BTNS connection.
var ownedRemoteKeys = []string{"auth", "id", "pubkeys", "certs", "cacerts", "eap_id", "xauth_id"}

// Expand returns the charon connections of policy p for the given keys
// (the whole store: Expand picks the ones p accepts) and host key. The
// result is sorted by name. It fails when the policy sets what btnsd must
// own: the remote authentication, or a second remote round.
func Expand(p Policy, keys []Key, host HostKey) ([]Conn, error) {
	if p.Name == "" {
		return nil, fmt.Errorf("%w: empty connection name", ErrPolicy)
	}
	if p.Body == nil {
		p.Body = vici.NewMsg()
	}
	remote, err := remoteTemplate(p)
	if err != nil {
		return nil, err
	}
	base := p.Body.Clone()
	for _, k := range base.Keys() {
		if k == "remote" || strings.HasPrefix(k, "remote-") {
			base.Delete(k)
		}
	}
	if base.Get("remote_addrs") == nil {
		base.Set("remote_addrs", []string{"%any"})
	}
	if p.Local == LocalHostKey {
		if len(host.PEM) == 0 {
			return nil, fmt.Errorf("%w: %s: no host key to authenticate with", ErrPolicy, p.Name)
		}
		local, err := localHostKey(p, host)
		if err != nil {
			return nil, err
		}
		for _, k := range base.Keys() {
			if k == "local" || strings.HasPrefix(k, "local-") {
				base.Delete(k)
			}
		}
		base.Set("local", local)
	}

	var out []Conn
	for _, k := range Accepted(p.Peers, keys) {
		body := base.Clone()
		r := remote.Clone()
		r.Set("auth", "pubkey")
		r.Set("pubkeys", []string{string(k.PEM)})
		id := k.Identity
		if id == "" {
			id = "keyid:#" + k.KeyID
		}
		r.Set("id", id)
		body.Set("remote", r)
		out = append(out, Conn{Name: ConnName(p.Name, k.Fingerprint), Policy: p.Name, Peer: k.Fingerprint, Body: body})
	}
	if p.Anonymous {
		body := base.Clone()
		// The anonymous side is symmetric by default: an unknown peer
		// cannot verify our raw key either.
		if p.Local == LocalHostKey {
			body.Set("local", anonLocal(body.Section("local")))
		}
		body.Set("unique", "never")
		r := remote.Clone()
		r.Set("auth", "psk")
		r.Set("id", "%any")
		body.Set("remote", r)
		out = append(out, Conn{Name: ConnName(p.Name, ""), Policy: p.Name, Anonymous: true, Body: body})
	}
	slices.SortFunc(out, func(a, b Conn) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Accepted returns the keys of the store that a policy with the given peer
// selection accepts, in store order. Untrusted keys are never accepted.
func Accepted(sel Peers, keys []Key) []Key {
	var out []Key
	for _, k := range keys {
		if !k.Trusted {
			continue
		}
		switch {
		case len(sel.Fingerprints) > 0:
			if slices.Contains(sel.Fingerprints, k.Fingerprint) {
				out = append(out, k)
			}
		case sel.Scope != "":
			if len(k.Scopes) == 0 || slices.Contains(k.Scopes, sel.Scope) {
				out = append(out, k)
			}
		case sel.All:
			if len(k.Scopes) == 0 {
				out = append(out, k)
			}
		}
	}
	return out
}

func remoteTemplate(p Policy) (*vici.Msg, error) {
	remote := vici.NewMsg()
	rounds := 0
	for _, k := range p.Body.Keys() {
		if !strings.HasPrefix(k, "remote-") && k != "remote" {
			continue
		}
		sec := p.Body.Section(k)
		if sec == nil {
			continue
		}
		if rounds++; rounds > 1 {
			return nil, fmt.Errorf("%w: %s: %s: a BTNS connection has one remote authentication round, which btnsd sets", ErrPolicy, p.Name, k)
		}
		for _, owned := range ownedRemoteKeys {
			if sec.Get(owned) != nil {
				return nil, fmt.Errorf("%w: %s: %s.%s is set by btnsd for BTNS connections (the peer is its key); remove it", ErrPolicy, p.Name, k, owned)
			}
		}
		remote = sec.Clone()
	}
	return remote, nil
}

func localHostKey(p Policy, host HostKey) (*vici.Msg, error) {
	local := vici.NewMsg()
	rounds := 0
	for _, k := range p.Body.Keys() {
		if k != "local" && !strings.HasPrefix(k, "local-") {
			continue
		}
		sec := p.Body.Section(k)
		if sec == nil {
			continue
		}
		if rounds++; rounds > 1 {
			return nil, fmt.Errorf("%w: %s: %s: with the host key, a BTNS connection has one local round; use local = config for your own", ErrPolicy, p.Name, k)
		}
		for _, owned := range []string{"auth", "pubkeys", "certs"} {
			if sec.Get(owned) != nil {
				return nil, fmt.Errorf("%w: %s: %s.%s conflicts with the host key; use local = config to authenticate otherwise", ErrPolicy, p.Name, k, owned)
			}
		}
		local = sec.Clone()
	}
	local.Set("auth", "pubkey")
	local.Set("pubkeys", []string{string(host.PEM)})
	return local, nil
}

func anonLocal(hostLocal *vici.Msg) *vici.Msg {
	l := vici.NewMsg()
	for _, k := range hostLocal.Keys() {
		switch k {
		case "auth", "pubkeys", "id":
		default:
			l.Set(k, hostLocal.Get(k))
		}
	}
	l.Set("auth", "psk")
	l.Set("id", AnonymousID)
	return l
}

// Digest returns a stable digest of a connection body, for telling whether
// a connection changed since it was last loaded.
func Digest(body *vici.Msg) string {
	j, err := body.MarshalJSON()
	if err != nil {
		// Msg holds only strings, lists and sections: it always encodes.
		panic(err)
	}
	sum := sha256.Sum256(j)
	return hex.EncodeToString(sum[:])
}
