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

	"github.com/btnsd/btnsd/configs"
	"github.com/btnsd/btnsd/fingerprints"
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

// Conn is one charon connection of the expanded PAD.
type Conn struct {
	// Name is the charon connection name (starts with Prefix).
	Name string
	// Policy is the policy connection it comes from.
	Policy string
	// Peer is the fingerprint (hex) of the pinned key; empty for the
	// anonymous connection and for connections without the BTNS flag.
	Peer string
	// Anonymous marks the public-PSK connection.
	Anonymous bool
	// Body is the load-conn body.
	Body *vici.Msg
}

// AnonymousSecret is the shared secret anonymous connections need.
func AnonymousSecret() vici.SharedSecret {
	return vici.SharedSecret{ID: AnonymousSecretID, Type: "IKE", Data: []byte(AnonymousPSK), Owners: []string{AnonymousID}}
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

// Expand returns the charon connections of the policy connection c, given
// the key store's entries (Expand picks those c accepts) and the host's
// public key. A connection without the BTNS flag becomes one connection,
// its body as swanctl would send it, under an owned name. The result is
// sorted by name. Expand fails when a BTNS connection sets what btnsd must
// own: the remote authentication, or a second remote round.
func Expand(c *configs.Conn, keys []fingerprints.Entry, host *fingerprints.PublicKey) ([]Conn, error) {
	if c.Name == "" {
		return nil, fmt.Errorf("%w: empty connection name", ErrPolicy)
	}
	body := c.Body
	if body == nil {
		body = vici.NewMsg()
	}
	if !c.Policy.Enabled {
		return []Conn{{Name: Prefix + c.Name, Policy: c.Name, Body: body}}, nil
	}
	p := &c.Policy
	remote, err := remoteTemplate(c.Name, body)
	if err != nil {
		return nil, err
	}
	base := body.Clone()
	for _, k := range base.Keys() {
		if k == "remote" || strings.HasPrefix(k, "remote-") {
			base.Delete(k)
		}
	}
	if base.Get("remote_addrs") == nil {
		base.Set("remote_addrs", []string{"%any"})
	}
	if p.Local != configs.LocalConfig {
		if host == nil {
			return nil, fmt.Errorf("%w: %s: no host key to authenticate with", ErrPolicy, c.Name)
		}
		local, err := localHostKey(c.Name, body, host)
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
		b := base.Clone()
		r := remote.Clone()
		r.Set("auth", "pubkey")
		r.Set("pubkeys", []string{string(k.Key.PEM())})
		r.Set("id", PeerID(k))
		b.Set("remote", r)
		fp := k.Key.Fingerprint.Hex()
		out = append(out, Conn{Name: ConnName(c.Name, fp), Policy: c.Name, Peer: fp, Body: b})
	}
	if p.Anonymous {
		b := base.Clone()
		// The anonymous side is symmetric by default: an unknown peer
		// cannot verify our raw key either.
		if p.Local != configs.LocalConfig {
			b.Set("local", anonLocal(b.Section("local")))
		}
		b.Set("unique", "never")
		r := remote.Clone()
		r.Set("auth", "psk")
		r.Set("id", "%any")
		b.Set("remote", r)
		out = append(out, Conn{Name: ConnName(c.Name, ""), Policy: c.Name, Anonymous: true, Body: b})
	}
	slices.SortFunc(out, func(a, b Conn) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// ExpandAll expands every connection of a policy set (see Expand) and
// checks that the charon names they produce are unique. Connections that
// fail are left out and their errors returned, each naming the
// connection's position.
func ExpandAll(conns []*configs.Conn, keys []fingerprints.Entry, host *fingerprints.PublicKey) ([]Conn, []error) {
	var out []Conn
	var errs []error
	seen := map[string]string{}
	for _, c := range conns {
		cs, err := Expand(c, keys, host)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Pos, err))
			continue
		}
		for _, bc := range cs {
			if other, dup := seen[bc.Name]; dup {
				errs = append(errs, fmt.Errorf("%s: charon connection %s is also produced by policy connection %s; rename one", c.Pos, bc.Name, other))
				continue
			}
			seen[bc.Name] = c.Name
			out = append(out, bc)
		}
	}
	return out, errs
}

// PeerID is the remote identity under which a key is pinned: the IKE
// identity stored with the key, or charon's keyid of the key, which is
// what a raw key asserts by default.
func PeerID(e fingerprints.Entry) string {
	if !e.Identity.IsZero() {
		return e.Identity.String()
	}
	return e.Key.KeyID.Swanctl()
}

// Accepted returns the entries a BTNS connection with the given peer
// selection accepts, in the order given. Untrusted keys are never
// accepted; scopes are the key store's (Entry.Accepts).
func Accepted(sel configs.Peers, keys []fingerprints.Entry) []fingerprints.Entry {
	var out []fingerprints.Entry
	for _, k := range keys {
		ok := false
		switch sel.Mode {
		case configs.PeersAll, "":
			ok = k.Accepts("")
		case configs.PeersScope:
			ok = k.Accepts(sel.Scope)
		case configs.PeersList:
			ok = k.Trust == fingerprints.Trusted && slices.Contains(sel.Fingerprints, k.Key.Fingerprint)
		}
		if ok {
			out = append(out, k)
		}
	}
	return out
}

func remoteTemplate(name string, body *vici.Msg) (*vici.Msg, error) {
	remote := vici.NewMsg()
	rounds := 0
	for _, k := range body.Keys() {
		if !strings.HasPrefix(k, "remote-") && k != "remote" {
			continue
		}
		sec := body.Section(k)
		if sec == nil {
			continue
		}
		if rounds++; rounds > 1 {
			return nil, fmt.Errorf("%w: %s: %s: a BTNS connection has one remote authentication round, which btnsd sets", ErrPolicy, name, k)
		}
		for _, owned := range ownedRemoteKeys {
			if sec.Get(owned) != nil {
				return nil, fmt.Errorf("%w: %s: %s.%s is set by btnsd for BTNS connections (the peer is its key); remove it", ErrPolicy, name, k, owned)
			}
		}
		remote = sec.Clone()
	}
	return remote, nil
}

func localHostKey(name string, body *vici.Msg, host *fingerprints.PublicKey) (*vici.Msg, error) {
	local := vici.NewMsg()
	rounds := 0
	for _, k := range body.Keys() {
		if k != "local" && !strings.HasPrefix(k, "local-") {
			continue
		}
		sec := body.Section(k)
		if sec == nil {
			continue
		}
		if rounds++; rounds > 1 {
			return nil, fmt.Errorf("%w: %s: %s: with the host key, a BTNS connection has one local round; use local = config for your own", ErrPolicy, name, k)
		}
		for _, owned := range []string{"auth", "pubkeys", "certs"} {
			if sec.Get(owned) != nil {
				return nil, fmt.Errorf("%w: %s: %s.%s conflicts with the host key; use local = config to authenticate otherwise", ErrPolicy, name, k, owned)
			}
		}
		local = sec.Clone()
	}
	local.Set("auth", "pubkey")
	local.Set("pubkeys", []string{string(host.PEM())})
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
