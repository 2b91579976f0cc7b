package btnsauth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/btnsd/btnsd/configs"
	"github.com/btnsd/btnsd/fingerprints"
	"github.com/btnsd/btnsd/vici"
	"github.com/google/go-cmp/cmp"
)

// testKey makes a key store entry for a new Ed25519 key.
func testKey(t *testing.T, m fingerprints.Meta) fingerprints.Entry {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := fingerprints.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return fingerprints.Entry{Key: k, Meta: m}
}

func hostKey(t *testing.T) *fingerprints.PublicKey { return testKey(t, fingerprints.Meta{}).Key }

func conn(t *testing.T, name, body string, p configs.Policy) *configs.Conn {
	t.Helper()
	return &configs.Conn{Name: name, Body: msg(t, body), Policy: p}
}

// msg builds a vici.Msg from JSON, keeping key order.
func msg(t *testing.T, js string) *vici.Msg {
	t.Helper()
	m := vici.NewMsg()
	if err := json.Unmarshal([]byte(js), m); err != nil {
		t.Fatalf("bad test JSON %s: %v", js, err)
	}
	return m
}

func js(t *testing.T, m *vici.Msg) string {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const child = `"children":{"web":{"mode":"tunnel","esp_proposals":["aes128gcm16"]}}`

func TestExpand(t *testing.T) {
	host := hostKey(t)
	lab := fingerprints.Scope{"lab"}
	b := testKey(t, fingerprints.Meta{Trust: fingerprints.Trusted})
	c := testKey(t, fingerprints.Meta{Trust: fingerprints.Trusted, Scope: lab, Identity: fingerprints.Identity{Type: fingerprints.IDFQDN, Value: "gw.example.org"}})
	d := testKey(t, fingerprints.Meta{Trust: fingerprints.Untrusted})
	store := []fingerprints.Entry{b, c, d}

	q := func(s string) string { j, _ := json.Marshal(s); return string(j) }
	hostLocal := `"local":{"auth":"pubkey","pubkeys":[` + q(string(host.PEM())) + `]}`
	pinned := func(e fingerprints.Entry, id string) string {
		return `"remote":{"auth":"pubkey","pubkeys":[` + q(string(e.Key.PEM())) + `],"id":` + q(id) + `}`
	}
	name := func(policy string, e fingerprints.Entry) string { return ConnName(policy, e.Key.Fingerprint.Hex()) }
	keyid := func(e fingerprints.Entry) string { return "keyid:#" + e.Key.KeyID.Hex() }

	tests := []struct {
		name string
		conn *configs.Conn
		want map[string]string // connection name -> body JSON
	}{
		{
			name: "all trusted unscoped keys, host key, default remote_addrs",
			conn: conn(t, "p", `{"version":"2",`+child+`}`, configs.Policy{Enabled: true, Peers: configs.Peers{Mode: configs.PeersAll}}),
			want: map[string]string{
				name("p", b): `{"version":"2",` + child + `,"remote_addrs":["%any"],` + hostLocal + `,` + pinned(b, keyid(b)) + `}`,
			},
		},
		{
			name: "scope takes the scope's keys (with their stored identity) and unscoped keys",
			conn: conn(t, "q", `{"remote_addrs":["10.99.0.0/24"]}`, configs.Policy{Enabled: true, Peers: configs.Peers{Mode: configs.PeersScope, Scope: "lab"}}),
			want: map[string]string{
				name("q", b): `{"remote_addrs":["10.99.0.0/24"],` + hostLocal + `,` + pinned(b, keyid(b)) + `}`,
				name("q", c): `{"remote_addrs":["10.99.0.0/24"],` + hostLocal + `,` + pinned(c, "fqdn:gw.example.org") + `}`,
			},
		},
		{
			name: "explicit fingerprints ignore scope but not trust",
			conn: conn(t, "r", `{}`, configs.Policy{Enabled: true, Peers: configs.Peers{Mode: configs.PeersList, Fingerprints: []fingerprints.Fingerprint{c.Key.Fingerprint, d.Key.Fingerprint}}}),
			want: map[string]string{
				name("r", c): `{"remote_addrs":["%any"],` + hostLocal + `,` + pinned(c, "fqdn:gw.example.org") + `}`,
			},
		},
		{
			name: "anonymous only: public PSK both ways, unique never",
			conn: conn(t, "anon", `{"local":{"id":"ignored-for-anon"},"remote":{"revocation":"relaxed"}}`, configs.Policy{Enabled: true, Peers: configs.Peers{Mode: configs.PeersNone}, Anonymous: true}),
			want: map[string]string{
				"btns.anon.anon": `{"remote_addrs":["%any"],"local":{"auth":"psk","id":"@btns-anonymous"},"unique":"never","remote":{"revocation":"relaxed","auth":"psk","id":"%any"}}`,
			},
		},
		{
			name: "local = config keeps the policy's own local rounds (asymmetric mode)",
			conn: conn(t, "asym", `{"local":{"auth":"psk","id":"@me"}}`, configs.Policy{Enabled: true, Peers: configs.Peers{Mode: configs.PeersList, Fingerprints: []fingerprints.Fingerprint{b.Key.Fingerprint}}, Local: configs.LocalConfig}),
			want: map[string]string{
				name("asym", b): `{"local":{"auth":"psk","id":"@me"},"remote_addrs":["%any"],` + pinned(b, keyid(b)) + `}`,
			},
		},
		{
			name: "no accepted key and no anonymous: nothing to load",
			conn: conn(t, "none", `{}`, configs.Policy{Enabled: true, Peers: configs.Peers{Mode: configs.PeersList, Fingerprints: []fingerprints.Fingerprint{d.Key.Fingerprint}}}),
			want: map[string]string{},
		},
		{
			name: "a connection without the BTNS flag passes through under an owned name",
			conn: conn(t, "plain", `{"remote":{"auth":"psk","id":"%any"}}`, configs.Policy{}),
			want: map[string]string{
				"btns.plain": `{"remote":{"auth":"psk","id":"%any"}}`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := js(t, tt.conn.Body)
			conns, err := Expand(tt.conn, store, host)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, c := range conns {
				if !Owned(c.Name) {
					t.Errorf("connection %q lacks the owned prefix", c.Name)
				}
				if c.Policy != tt.conn.Name {
					t.Errorf("%s: Policy = %q", c.Name, c.Policy)
				}
				got[c.Name] = js(t, c.Body)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Expand (-want +got):\n%s", diff)
			}
			if after := js(t, tt.conn.Body); after != before {
				t.Errorf("Expand modified the policy body:\n%s\n%s", before, after)
			}
		})
	}
}

func TestExpandRefusesWhatBTNSOwns(t *testing.T) {
	host := hostKey(t)
	store := []fingerprints.Entry{testKey(t, fingerprints.Meta{Trust: fingerprints.Trusted})}
	tests := []struct {
		name, body string
		want       string
	}{
		{"remote auth", `{"remote":{"auth":"pubkey"}}`, "remote.auth is set by btnsd"},
		{"remote id", `{"remote":{"id":"%any"}}`, "remote.id is set by btnsd"},
		{"remote certs", `{"remote-x":{"cacerts":["x"]}}`, "remote-x.cacerts is set by btnsd"},
		{"two remote rounds", `{"remote-1":{},"remote-2":{}}`, "one remote authentication round"},
		{"local auth with host key", `{"local":{"auth":"psk"}}`, "conflicts with the host key"},
		{"two local rounds with host key", `{"local-1":{},"local-2":{}}`, "one local round"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Expand(conn(t, "p", tt.body, configs.Policy{Enabled: true}), store, host)
			if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrPolicy containing %q", err, tt.want)
			}
		})
	}
	_, err := Expand(conn(t, "p", `{}`, configs.Policy{Enabled: true}), store, nil)
	if !errors.Is(err, ErrPolicy) {
		t.Fatalf("no host key: err = %v", err)
	}
}

func TestAnonymousSecretOwnedByAnonymousIdentity(t *testing.T) {
	s := AnonymousSecret()
	if len(s.Data) < 32 {
		t.Errorf("public PSK is %d bytes, want >= 32 (FIPS checks elsewhere)", len(s.Data))
	}
	if diff := cmp.Diff([]string{AnonymousID}, s.Owners); diff != "" {
		t.Errorf("owners (-want +got):\n%s", diff)
	}
}

func TestDigestChangesWithContent(t *testing.T) {
	a := msg(t, `{"x":"1","y":{"z":["a","b"]}}`)
	b := msg(t, `{"x":"1","y":{"z":["a","c"]}}`)
	if Digest(a) == Digest(b) {
		t.Fatal("different bodies share a digest")
	}
	if Digest(a) != Digest(a.Clone()) {
		t.Fatal("equal bodies differ in digest")
	}
}
