package btnsauth

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/btnsd/btnsd/vici"
	"github.com/google/go-cmp/cmp"
)

const (
	hostPEM = "-----BEGIN PUBLIC KEY-----\nHOST\n-----END PUBLIC KEY-----\n"
	pemB    = "-----BEGIN PUBLIC KEY-----\nBBBB\n-----END PUBLIC KEY-----\n"
	pemC    = "-----BEGIN PUBLIC KEY-----\nCCCC\n-----END PUBLIC KEY-----\n"
	fpB     = "bb00000000000000000000000000000000000000000000000000000000000001"
	fpC     = "cc00000000000000000000000000000000000000000000000000000000000002"
	fpD     = "dd00000000000000000000000000000000000000000000000000000000000003"
)

var store = []Key{
	{Fingerprint: fpB, KeyID: "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1", PEM: []byte(pemB), Trusted: true},
	{Fingerprint: fpC, KeyID: "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1", PEM: []byte(pemC), Trusted: true, Identity: "gw.example.org", Scopes: []string{"lab"}},
	{Fingerprint: fpD, KeyID: "d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1", PEM: []byte("D"), Trusted: false},
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
	tests := []struct {
		name   string
		policy Policy
		want   map[string]string // connection name -> body JSON
	}{
		{
			name:   "all trusted unscoped keys, host key, default remote_addrs",
			policy: Policy{Name: "p", Body: msg(t, `{"version":"2",`+child+`}`), Peers: Peers{All: true}},
			want: map[string]string{
				"btns.p.bb00000000000000": `{"version":"2",` + child + `,"remote_addrs":["%any"],"local":{"auth":"pubkey","pubkeys":["` + jsonEsc(hostPEM) + `"]},"remote":{"auth":"pubkey","pubkeys":["` + jsonEsc(pemB) + `"],"id":"keyid:#b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1"}}`,
			},
		},
		{
			name:   "scope selects the scope's keys (with their stored identity) and unscoped keys",
			policy: Policy{Name: "q", Body: msg(t, `{"remote_addrs":["10.99.0.0/24"]}`), Peers: Peers{Scope: "lab"}},
			want: map[string]string{
				"btns.q.bb00000000000000": `{"remote_addrs":["10.99.0.0/24"],"local":{"auth":"pubkey","pubkeys":["` + jsonEsc(hostPEM) + `"]},"remote":{"auth":"pubkey","pubkeys":["` + jsonEsc(pemB) + `"],"id":"keyid:#b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1"}}`,
				"btns.q.cc00000000000000": `{"remote_addrs":["10.99.0.0/24"],"local":{"auth":"pubkey","pubkeys":["` + jsonEsc(hostPEM) + `"]},"remote":{"auth":"pubkey","pubkeys":["` + jsonEsc(pemC) + `"],"id":"gw.example.org"}}`,
			},
		},
		{
			name:   "explicit fingerprints ignore scope but not trust",
			policy: Policy{Name: "r", Body: msg(t, `{}`), Peers: Peers{Fingerprints: []string{fpC, fpD}}},
			want: map[string]string{
				"btns.r.cc00000000000000": `{"remote_addrs":["%any"],"local":{"auth":"pubkey","pubkeys":["` + jsonEsc(hostPEM) + `"]},"remote":{"auth":"pubkey","pubkeys":["` + jsonEsc(pemC) + `"],"id":"gw.example.org"}}`,
			},
		},
		{
			name:   "anonymous only: public PSK both ways, unique never",
			policy: Policy{Name: "anon", Body: msg(t, `{"local":{"id":"ignored-for-anon"},"remote":{"revocation":"relaxed"}}`), Anonymous: true},
			want: map[string]string{
				"btns.anon.anon": `{"remote_addrs":["%any"],"local":{"auth":"psk","id":"@btns-anonymous"},"unique":"never","remote":{"revocation":"relaxed","auth":"psk","id":"%any"}}`,
			},
		},
		{
			name:   "local = config keeps the policy's own local rounds (asymmetric mode)",
			policy: Policy{Name: "asym", Body: msg(t, `{"local":{"auth":"psk","id":"@me"}}`), Peers: Peers{Fingerprints: []string{fpB}}, Local: LocalConfig},
			want: map[string]string{
				"btns.asym.bb00000000000000": `{"local":{"auth":"psk","id":"@me"},"remote_addrs":["%any"],"remote":{"auth":"pubkey","pubkeys":["` + jsonEsc(pemB) + `"],"id":"keyid:#b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1"}}`,
			},
		},
		{
			name:   "no accepted key and no anonymous: nothing to load",
			policy: Policy{Name: "none", Body: msg(t, `{}`), Peers: Peers{Fingerprints: []string{fpD}}},
			want:   map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := js(t, tt.policy.Body)
			conns, err := Expand(tt.policy, store, HostKey{PEM: []byte(hostPEM)})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, c := range conns {
				if !Owned(c.Name) {
					t.Errorf("connection %q lacks the owned prefix", c.Name)
				}
				if c.Policy != tt.policy.Name {
					t.Errorf("%s: Policy = %q", c.Name, c.Policy)
				}
				got[c.Name] = js(t, c.Body)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Expand (-want +got):\n%s", diff)
			}
			if after := js(t, tt.policy.Body); after != before {
				t.Errorf("Expand modified the policy body:\n%s\n%s", before, after)
			}
		})
	}
}

func jsonEsc(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

func TestExpandRefusesWhatBTNSOwns(t *testing.T) {
	tests := []struct {
		name, body string
		local      LocalAuth
		want       string
	}{
		{"remote auth", `{"remote":{"auth":"pubkey"}}`, LocalHostKey, "remote.auth is set by btnsd"},
		{"remote id", `{"remote":{"id":"%any"}}`, LocalHostKey, "remote.id is set by btnsd"},
		{"remote certs", `{"remote-x":{"cacerts":["x"]}}`, LocalHostKey, "remote-x.cacerts is set by btnsd"},
		{"two remote rounds", `{"remote-1":{},"remote-2":{}}`, LocalHostKey, "one remote authentication round"},
		{"local auth with host key", `{"local":{"auth":"psk"}}`, LocalHostKey, "conflicts with the host key"},
		{"two local rounds with host key", `{"local-1":{},"local-2":{}}`, LocalHostKey, "one local round"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Expand(Policy{Name: "p", Body: msg(t, tt.body), Peers: Peers{All: true}, Local: tt.local}, store, HostKey{PEM: []byte(hostPEM)})
			if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrPolicy containing %q", err, tt.want)
			}
		})
	}
	_, err := Expand(Policy{Name: "p", Body: msg(t, `{}`), Peers: Peers{All: true}}, store, HostKey{})
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
