package configs

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/btnsd/btnsd/fingerprints"
)

const (
	fpB64 = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU" // SHA-256 of ""
	fpHex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
)

func mustFP(t *testing.T, s string) fingerprints.Fingerprint {
	t.Helper()
	f, err := fingerprints.ParseFingerprint(s)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// loadOne loads a single policy file from a map of files.
func loadOne(t *testing.T, files map[string]string) *File {
	t.Helper()
	return LoadFile(mapFS(files), "p.conf", Options{})
}

func TestPolicy(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want map[string]Policy
	}{
		{
			name: "no btns section: defaults, not enabled",
			src:  "connections {\n a {\n children { c { } }\n }\n}\n",
			want: map[string]Policy{"a": {
				Peers: Peers{Mode: PeersAll}, Local: LocalHostKey,
				Children: []ChildPolicy{{Name: "c", Latch: false, OnBreak: Reset}},
			}},
		},
		{
			name: "enabled: latching on by default",
			src:  "connections {\n a {\n btns { enabled = yes }\n children { c { } d { btns { latch = no } } }\n }\n}\n",
			want: map[string]Policy{"a": {
				Enabled: true, Peers: Peers{Mode: PeersAll}, Local: LocalHostKey,
				Children: []ChildPolicy{{Name: "c", Latch: true, OnBreak: Reset}, {Name: "d", Latch: false, OnBreak: Reset}},
			}},
		},
		{
			name: "every key",
			src: `connections {
	a {
		btns {
			enabled = TRUE
			peers = ` + fpB64 + `, ` + fpHex + `
			anonymous = 1
			max_sas = 100
			max_sas_per_addr = 3
			local = config
		}
		local { auth = psk }
		children {
			c { btns {
				latch = disabled
				on_break = Notify
			} }
		}
	}
}`,
			want: map[string]Policy{"a": {
				Enabled:       true,
				Peers:         Peers{Mode: PeersList, Fingerprints: []fingerprints.Fingerprint{mustFP(t, fpB64), mustFP(t, fpHex)}},
				Anonymous:     true,
				MaxSAs:        100,
				MaxSAsPerAddr: 3,
				Local:         LocalConfig,
				Children:      []ChildPolicy{{Name: "c", Latch: false, OnBreak: Notify}},
			}},
		},
		{
			name: "peers none with anonymous, scope",
			src: `connections {
	a { btns {
		enabled = yes
		peers = none
		anonymous = yes
	} }
	b { btns {
		enabled = yes
		peers = scope:lab-1.x
	} }
}`,
			want: map[string]Policy{
				"a": {Enabled: true, Peers: Peers{Mode: PeersNone}, Anonymous: true, Local: LocalHostKey},
				"b": {Enabled: true, Peers: Peers{Mode: PeersScope, Scope: "lab-1.x"}, Local: LocalHostKey},
			},
		},
		{
			name: "inherited through references, hidden by an empty value",
			src: `tpl {
	btns {
		enabled = yes
		max_sas = 5
	}
	children { c { btns { on_break = notify } } }
}
connections {
	a : tpl { }
	b : tpl {
		btns {
			max_sas =
		}
		children { c { btns { latch = no } } }
	}
}`,
			want: map[string]Policy{
				"a": {Enabled: true, Peers: Peers{Mode: PeersAll}, MaxSAs: 5, Local: LocalHostKey,
					Children: []ChildPolicy{{Name: "c", Latch: true, OnBreak: Notify}}},
				"b": {Enabled: true, Peers: Peers{Mode: PeersAll}, Local: LocalHostKey,
					Children: []ChildPolicy{{Name: "c", Latch: false, OnBreak: Notify}}},
			},
		},
		{
			name: "a child named btns is a child",
			src:  "connections {\n a {\n children { btns { btns { latch = yes } } }\n }\n}\n",
			want: map[string]Policy{"a": {Peers: Peers{Mode: PeersAll}, Local: LocalHostKey,
				Children: []ChildPolicy{{Name: "btns", Latch: true, OnBreak: Reset}}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := loadOne(t, map[string]string{"p.conf": tt.src})
			if f.Err != nil {
				t.Fatal(f.Err)
			}
			got := map[string]Policy{}
			for _, c := range f.Conns {
				got[c.Name] = c.Policy
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("policies (-want +got)\n%s", diff)
			}
		})
	}
}

func TestPolicyErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "bad booleans",
			src:  "connections {\n a { btns {\n enabled = maybe\n anonymous = oui\n }\n children { c { btns { latch = sure } } } }\n}\n",
			want: []string{
				`p.conf:3:12: invalid value "maybe" for btns.enabled in connection "a": expected yes or no`,
				`p.conf:4:14: invalid value "oui" for btns.anonymous in connection "a": expected yes or no`,
				`p.conf:6:32: invalid value "sure" for btns.latch in child "c" of connection "a": expected yes or no`,
			},
		},
		{
			name: "bad limits",
			src:  "connections {\n a { btns {\n max_sas = 0\n max_sas_per_addr = -1\n }\n}\n b { btns {\n max_sas = 3000000000\n max_sas_per_addr = 0x10\n }\n}\n}\n",
			want: []string{
				`p.conf:3:12: invalid value "0" for btns.max_sas in connection "a": expected a whole number from 1 to 2147483647`,
				`p.conf:4:21: invalid value "-1" for btns.max_sas_per_addr`,
				`p.conf:8:12: invalid value "3000000000" for btns.max_sas in connection "b"`,
				`p.conf:9:21: invalid value "0x10" for btns.max_sas_per_addr`,
			},
		},
		{
			name: "bad local and on_break",
			src:  "connections {\n a { btns {\n local = mine\n }\n children { c { btns { on_break = explode } } } }\n}\n",
			want: []string{
				`p.conf:3:10: invalid value "mine" for btns.local in connection "a": expected hostkey`,
				`p.conf:5:35: invalid value "explode" for btns.on_break in child "c" of connection "a": expected reset`,
			},
		},
		{
			name: "bad peers",
			src: "connections {\n" +
				" a { btns {\n peers = SHA256:abc\n } }\n" +
				" b { btns {\n peers = all, " + fpHex + "\n } }\n" +
				" c { btns {\n peers = " + fpHex + ",," + fpB64 + "\n } }\n" +
				" d { btns {\n peers = scope:\n } }\n" +
				" e { btns {\n peers = scope:a b\n } }\n" +
				" f { btns {\n peers = " + fpHex + ", e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855, " + fpB64 + "\n } }\n" +
				" g { btns {\n peers = \"\"\n } }\n" +
				"}\n",
			want: []string{
				`p.conf:3:10: invalid value "SHA256:abc" for btns.peers in connection "a": bad fingerprint: "SHA256:abc" is not SHA256: and 43 base64 characters`,
				`p.conf:6:10: invalid value "all, 9f86`,
				`p.conf:9:10: invalid value "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08,,SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU" for btns.peers in connection "c": empty element`,
				`p.conf:12:10: invalid value "scope:" for btns.peers in connection "d": scope name "" must be`,
				`p.conf:15:10: invalid value "scope:a b" for btns.peers in connection "e": scope name "a b" must be`,
				`p.conf:18:10: invalid value "9f86`,
				`p.conf:21:10: invalid value "" for btns.peers in connection "g": expected all, none`,
			},
		},
		{
			name: "unknown and misplaced keys",
			src:  "connections {\n a { btns {\n enable = yes\n latch = no\n sub { }\n }\n children { c { btns {\n peers = all\n } } } }\n}\n",
			want: []string{
				`p.conf:3:2: unknown key btns.enable in connection "a" (known: enabled, peers, anonymous, max_sas, max_sas_per_addr, local)`,
				`p.conf:4:2: btns.latch is a child setting, not allowed in connection "a": put it into children.<child>.btns`,
				`p.conf:5:2: unexpected section "sub" in the btns section of connection "a"`,
				`p.conf:8:2: btns.peers is a connection setting, not allowed in child "c" of connection "a"`,
			},
		},
		{
			name: "btns in the wrong places",
			src:  "connections {\n a {\n btns = yes\n local { btns { } }\n children { btns = x\n c { btns = y\n esp { btns { } } } } }\n}\nbtns { }\n",
			want: []string{
				`p.conf:4:10: a btns section belongs in a connection or in one of its children, not in connections.a.local`,
				`p.conf:7:8: a btns section belongs in a connection or in one of its children, not in connections.a.children.c.esp`,
				`p.conf:3:2: btns in connection "a" is a key; btnsd's settings go into a section`,
				`p.conf:6:6: btns in child "c" of connection "a" is a key`,
			},
		},
		{
			name: "local sections and the host key",
			src: "connections {\n" +
				" a { btns { enabled = yes }\n local-1 { auth = psk } }\n" +
				" b { btns {\n enabled = yes\n local = config\n } }\n" +
				" c { local { auth = psk } }\n" + // not BTNS: anything goes
				"}\n",
			want: []string{
				`p.conf:3:2: connection "a" is a BTNS connection authenticated with btnsd's host key, but has its own section "local-1"`,
				`p.conf:6:2: connection "b" has btns.local = config but no local section`,
			},
		},
		{
			name: "accepts nobody",
			src:  "connections {\n a { btns {\n enabled = yes\n peers = none\n } }\n b { btns {\n enabled = yes\n peers = none\n anonymous = yes\n } }\n}\n",
			want: []string{`p.conf:4:2: connection "a" accepts no peer: btns.peers = none needs btns.anonymous = yes`},
		},
		{
			name: "unsupported top-level sections",
			src:  "secrets { ike { secret = x } }\npools { p { addrs = 10.0.0.0/24 } }\nauthorities { }\nconnections { a { } }\n",
			want: []string{
				`p.conf:1:1: secrets sections are not supported in btnsd policy files`,
				`p.conf:2:1: pools sections are not supported`,
				`p.conf:3:1: authorities sections are not supported`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := loadOne(t, map[string]string{"p.conf": tt.src})
			if f.Err == nil {
				t.Fatal("no error")
			}
			if f.Conns != nil {
				t.Errorf("a bad file has connections")
			}
			var got []string
			for _, e := range Errors(f.Err) {
				got = append(got, e.Error())
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got errors\n%s\nwant %d", strings.Join(got, "\n"), len(tt.want))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("error %d\n got: %s\nwant: %s...", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// A connection without btns passes through: its body is what swanctl
// sends. A BTNS connection's body is swanctl's without the btns sections.
func TestStrip(t *testing.T) {
	files := map[string]string{"p.conf": `connections {
	plain {
		remote_addrs = a, b
		local { auth = psk }
		children { c { mode = transport } }
	}
	off {
		btns { enabled = no }
		children { c { btns { latch = yes } } }
	}
	on {
		version = 2
		btns {
			enabled = yes
		}
		children {
			c {
				btns { on_break = notify }
				mode = transport
			}
			btns { mode = tunnel }
		}
	}
}`}
	fsys := mapFS(files)
	f := LoadFile(fsys, "p.conf", Options{})
	if f.Err != nil {
		t.Fatal(f.Err)
	}
	msgs, err := swanctlMsgs(t, fsys, "p.conf", Dirs{})
	if err != nil {
		t.Fatal(err)
	}
	if !f.Conn("plain").Msg().Equal(msgs[0].Msg()) {
		t.Errorf("plain connection changed:\n%s\nswanctl:\n%s", f.Conn("plain").Msg().Format(), msgs[0].Msg().Format())
	}
	for name, want := range map[string]string{
		"off": `{"off": {"children": {"c": {}}}}`,
		"on":  `{"on": {"version": "2", "children": {"c": {"mode": "transport"}, "btns": {"mode": "tunnel"}}}}`,
	} {
		if got := f.Conn(name).Msg(); !got.Equal(msgJSON(t, want)) {
			t.Errorf("%s:\n%s\nwant %s", name, got.Format(), want)
		}
	}
	// Stripping works on a copy.
	if msgs[2].Body.Section("btns") == nil {
		t.Errorf("Swanctl's body lost its btns section")
	}
}

func TestPeersString(t *testing.T) {
	for _, s := range []string{"all", "none", "scope:x", fpB64, fpB64 + ", " + mustFP(t, fpHex).String()} {
		p, err := parsePeers(s)
		if err != nil {
			t.Fatal(err)
		}
		if p.String() != s {
			t.Errorf("round trip %q -> %q", s, p.String())
		}
	}
}
