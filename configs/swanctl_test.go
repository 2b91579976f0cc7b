package configs

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btnsd/btnsd/vici"
	"github.com/google/go-cmp/cmp"
)

func TestSplitList(t *testing.T) {
	// load_conns.c add_list_key: enumerator_create_token(value, ",", " ")
	tests := []struct {
		in   string
		want []string
	}{
		{"", []string{}},
		{"a", []string{"a"}},
		{"a,b", []string{"a", "b"}},
		{"  a  ,  b  ", []string{"a", "b"}},
		{"a b, c", []string{"a b", "c"}},
		{",,a,,b,,", []string{"a", "b"}},
		{" , , ", []string{}},
		{"a\t, b", []string{"a\t", "b"}}, // only spaces are trimmed
		{`"a, b" , c`, []string{"a, b", "c"}},
		{`'a, b'c,d`, []string{"a, b", "c", "d"}},
		{`"  x  "`, []string{"  x  "}},
		{`""`, []string{""}},
		{`"unterminated, x`, []string{`"unterminated`, "x"}},
		{`a'b,c`, []string{"a'b", "c"}},
	}
	for _, tt := range tests {
		if got := splitList(tt.in); !slices.Equal(got, tt.want) || got == nil {
			t.Errorf("splitList(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestChunkDecoders(t *testing.T) {
	hexTests := []struct {
		in   string
		want []byte
	}{
		{"", []byte{}},
		{"00ff10", []byte{0x00, 0xff, 0x10}},
		{"0x0a0B", []byte{0x0a, 0x0b}},
		{"30:0a:Ff", []byte{0x30, 0x0a, 0xff}},
		{"abc", []byte{0x0a, 0xbc}}, // odd: filled from the right
		{"zz", []byte{0x00}},        // non-hex digits read as 0
		{"a::b", []byte{0x0b}},      // the high nibble is a ':' read as 0
		{":a", []byte{0x0a}},
	}
	for _, tt := range hexTests {
		if got := chunkFromHex(tt.in); !bytes.Equal(got, tt.want) {
			t.Errorf("chunkFromHex(%q) = %x, want %x", tt.in, got, tt.want)
		}
	}
	b64Tests := []struct {
		in   string
		want []byte
	}{
		{"", []byte{}},
		{"Zm9vYmFy", []byte("foobar")},
		{"Zm9vYg==", []byte("foob")},
		{"Zm9vYmE=", []byte("fooba")},
		{"Zm9vYmFy===", []byte("foobar")}, // a partial last block is ignored
		{"-_-_", []byte{0xfb, 0xff, 0xbf}},
		{"!!!!", []byte{0xff, 0xff, 0xff}}, // invalid digits decode as -1
	}
	for _, tt := range b64Tests {
		if got := chunkFromBase64(tt.in); !bytes.Equal(got, tt.want) {
			t.Errorf("chunkFromBase64(%q) = %x, want %x", tt.in, got, tt.want)
		}
	}
}

// msgJSON decodes a JSON object into a vici.Msg for expectations.
func msgJSON(t *testing.T, s string) *vici.Msg {
	t.Helper()
	m := vici.NewMsg()
	if err := json.Unmarshal([]byte(s), m); err != nil {
		t.Fatalf("bad expectation %s: %v", s, err)
	}
	return m
}

func swanctlMsgs(t *testing.T, fsys fs.FS, name string, dirs Dirs) ([]Message, error) {
	t.Helper()
	root, err := ParseFile(fsys, name)
	if err != nil {
		return nil, err
	}
	return Swanctl(fsys, root, dirs)
}

func TestSwanctlMapping(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		dirs  Dirs
		want  []string // one JSON object per load-conn request, {name: body}
	}{
		{
			name: "keys, then sections, in file order",
			files: map[string]string{"p/main.conf": `
connections {
	rw {
		version = 2
		local_addrs = 192.0.2.1, 2001:db8::1
		remote_addrs = %any
		proposals = aes256-sha256-ecp256,default
		vips = 0.0.0.0, ::
		pools = v4, v6
		unique = never
		local-1 { auth = pubkey id = gw.example }
		remote-1 { auth = pubkey }
		remote-2 { auth = eap-tls groups = admins, ops cert_policy = 1.3.6.1.4.1.36906.1 }
		children {
			net { local_ts = 10.1.0.0/16, 10.2.0.0/16 esp_proposals = aes128gcm16-ecp256 ah_proposals = }
			dns { remote_ts = dynamic[udp/53] mode = transport }
		}
		mobike = no
	}
	other { }
}
secrets { ignored { secret = x } }
`},
			want: []string{
				`{"rw": {"version": "2", "local_addrs": ["192.0.2.1", "2001:db8::1"], "remote_addrs": ["%any"],
					"proposals": ["aes256-sha256-ecp256", "default"], "vips": ["0.0.0.0", "::"], "pools": ["v4", "v6"],
					"unique": "never", "mobike": "no",
					"local-1": {"auth": "pubkey id = gw.example"},
					"remote-1": {"auth": "pubkey"},
					"remote-2": {"auth": "eap-tls groups = admins, ops cert_policy = 1.3.6.1.4.1.36906.1"},
					"children": {
						"net": {"local_ts": ["10.1.0.0/16", "10.2.0.0/16 esp_proposals = aes128gcm16-ecp256 ah_proposals ="]},
						"dns": {"remote_ts": ["dynamic[udp/53] mode = transport"]}}}}`,
				`{"other": {}}`,
			},
		},
		{
			name: "file keys beside the file, absolute, inline",
			files: map[string]string{
				"etc/btnsd/policy.d/a.conf": `connections { a {
	local { certs = me.pem
		pubkeys = 0x0102, 0sAwQ= }
	remote { cacerts = ca.pem, /etc/ssl/root.pem
		pubkeys = peer.pub }
} }`,
				"etc/btnsd/policy.d/x509/me.pem":     "ME",
				"etc/btnsd/policy.d/x509ca/ca.pem":   "CA",
				"etc/btnsd/policy.d/pubkey/peer.pub": "PEER",
				"etc/ssl/root.pem":                   "ROOT",
			},
			want: []string{`{"a": {
				"local": {"certs": ["ME"], "pubkeys": ["\u0001\u0002", "\u0003\u0004"]},
				"remote": {"cacerts": ["CA", "ROOT"], "pubkeys": ["PEER"]}}}`},
		},
		{
			name: "configured dirs",
			dirs: Dirs{X509: "/etc/swanctl/x509", X509CA: "etc/swanctl/x509ca", Pubkey: "keys"},
			files: map[string]string{
				"p/a.conf":                  "connections { a { local { certs = me.pem }\n remote { cacerts = ca.pem\n pubkeys = k.pub } } }",
				"etc/swanctl/x509/me.pem":   "ME",
				"etc/swanctl/x509ca/ca.pem": "CA",
				"keys/k.pub":                "K",
			},
			want: []string{`{"a": {"local": {"certs": ["ME"]}, "remote": {"cacerts": ["CA"], "pubkeys": ["K"]}}}`},
		},
		{
			name: "relative names are relative to the top file, not to an included one",
			files: map[string]string{
				"p/a.conf":          "connections {\n include sub/b.conf\n}\n",
				"p/sub/b.conf":      "b { local { certs = c.pem } }\n",
				"p/x509/c.pem":      "TOP",
				"p/sub/x509/c.pem":  "SUB",
				"p/sub/x509/c2.pem": "SUB2",
			},
			want: []string{`{"b": {"local": {"certs": ["TOP"]}}}`},
		},
		{
			name: "templates and hidden keys",
			files: map[string]string{"p/a.conf": `
base { version = 2 mobike = no
	local { auth = pubkey }
	children { c { mode = tunnel start_action = trap } }
}
connections {
	a : base {
		mobike =
		remote_addrs = peer
		children { c { start_action = } d { } }
	}
}`},
			want: []string{`{"a": {"remote_addrs": ["peer"], "version": "2 mobike = no",
				"children": {"c": {"mode": "tunnel start_action = trap"}, "d": {}},
				"local": {"auth": "pubkey"}}}`},
		},
		{
			name:  "no connections",
			files: map[string]string{"p/a.conf": "# nothing\nconnections {\n  key = ignored\n}\n"},
			want:  nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var name string
			for k := range tt.files {
				if strings.HasSuffix(k, ".conf") && (name == "" || k < name) {
					name = k
				}
			}
			msgs, err := swanctlMsgs(t, mapFS(tt.files), name, tt.dirs)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != len(tt.want) {
				t.Fatalf("got %d messages, want %d", len(msgs), len(tt.want))
			}
			for i, w := range tt.want {
				want := msgJSON(t, w)
				if got := msgs[i].Msg(); !got.Equal(want) {
					t.Errorf("message %d\n got: %s\nwant: %s", i, got.Format(), want.Format())
				}
			}
		})
	}
}

func TestSwanctlMappingErrors(t *testing.T) {
	long := strings.Repeat("n", 128)
	tests := []struct {
		name  string
		files map[string]string
		want  []string // error prefixes, in order
	}{
		{
			name:  "missing file",
			files: map[string]string{"a.conf": "connections {\n a { local { certs = x.pem, y.pem } } }\n"},
			want:  []string{`a.conf:2:22: loading certs certificate "x509/x.pem" failed: file does not exist`},
		},
		{
			name:  "file outside the fs",
			files: map[string]string{"a.conf": "connections {\n a { remote { cacerts = ../../x.pem } } }\n"},
			want:  []string{`a.conf:2:25: loading cacerts certificate "../../x.pem" failed: path ../x.pem is outside the policy file system`},
		},
		{
			name:  "relative file under a key not in lowercase",
			files: map[string]string{"a.conf": "connections {\n a { local { Certs = x.pem } } }\n"},
			want:  []string{`a.conf:2:14: relative file "x.pem" in Certs: swanctl resolves it against its working directory`},
		},
		{
			name:  "percent in a name",
			files: map[string]string{"a.conf": "connections {\n a%s { }\n b { c%d { } }\n}\n"},
			want:  []string{`a.conf:2:2: section name "a%s" contains '%'`, `a.conf:3:6: section name "c%d" contains '%'`},
		},
		{
			name:  "name too long",
			files: map[string]string{"a.conf": "connections {\n " + long + " { }\n}\n"},
			want:  []string{`a.conf:2:2: section name "nnnnnnnnnnnnnnnnnnnn"... is longer than 127 bytes`},
		},
		{
			name: "path too long",
			files: map[string]string{"a.conf": "connections {\n a { children {\n" +
				" " + strings.Repeat("c", 120) + " { " + strings.Repeat("d", 120) + " { } }\n} } }\n"},
			want: []string{`a.conf:3:125: section path connections.a.children.ccc`},
		},
		{
			name:  "value too long",
			files: map[string]string{"a.conf": "connections {\n a { x = " + strings.Repeat("v", 70000) + "\n } }\n"},
			want:  []string{`a.conf:2:10: value of x is 70000 bytes, more than VICI's limit of 65535`},
		},
		{
			name: "message too large",
			files: map[string]string{
				"a.conf": "connections {\n a { local { certs = 1, 2, 3, 4, 5, 6, 7, 8, 9 } } }\n",
				"x509/1": strings.Repeat("x", 60000), "x509/2": strings.Repeat("x", 60000), "x509/3": strings.Repeat("x", 60000),
				"x509/4": strings.Repeat("x", 60000), "x509/5": strings.Repeat("x", 60000), "x509/6": strings.Repeat("x", 60000),
				"x509/7": strings.Repeat("x", 60000), "x509/8": strings.Repeat("x", 60000), "x509/9": strings.Repeat("x", 60000),
			},
			want: []string{`a.conf:2:2: connection "a" makes a load-conn message larger than VICI's limit of 524288 bytes`},
		},
		{
			name:  "key and section of one name",
			files: map[string]string{"a.conf": "connections {\n a { local = x\n local { } } }\n"},
			want:  []string{`a.conf:3:2: section "local" has the name of a key of connections.a`},
		},
		{
			name:  "dangling references",
			files: map[string]string{"a.conf": "connections {\n a : tpl, connections.b.x { }\n b { }\n}\n"},
			want:  []string{`a.conf:2:6: reference "tpl" names no section`, `a.conf:2:11: reference "connections.b.x" names no section`},
		},
		{
			name:  "reference loop",
			files: map[string]string{"a.conf": "connections {\n a : connections.a.children {\n children { } } }\n"},
			want:  []string{`a.conf:2:6: reference "connections.a.children" leads to a reference loop`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := swanctlMsgs(t, mapFS(tt.files), "a.conf", Dirs{})
			if err == nil {
				t.Fatal("no error")
			}
			errs := Errors(err)
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got errors\n%s\nwant %d", strings.Join(got, "\n"), len(tt.want))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("error %d\n got: %s\nwant: %s...", i, got[i], tt.want[i])
				}
				var pe *Error
				if !errors.As(errs[i], &pe) {
					t.Errorf("error %d is a %T", i, errs[i])
				}
			}
		})
	}
}

func TestMessageMsg(t *testing.T) {
	body := vici.NewMsg()
	body.Set("version", "2")
	m := Message{Name: "c", Body: body}
	want := msgJSON(t, `{"c": {"version": "2"}}`)
	if diff := cmp.Diff(want.Format(), m.Msg().Format()); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

// References can make a small file expand without end; mapping stays
// bounded and says why.
func TestExpansionBombs(t *testing.T) {
	tests := []struct {
		src  string
		want string
	}{
		{
			src:  "tpl {\n k = " + strings.Repeat("v", 1000) + "\n s1 : tpl { }\n s2 : tpl { }\n}\nconnections {\n x : tpl { }\n}\n",
			want: `p.conf:3:7: reference "tpl" leads to a reference loop`, // endless, not circular
		},
		{
			src:  "tpl {\n k = " + strings.Repeat("v", 60000) + "\n a : tpl { }\n b : tpl { }\n c : tpl { }\n}\nconnections {\n x : tpl { }\n}\n",
			want: `p.conf:8:2: connection "x" makes a load-conn message larger than VICI's limit`,
		},
		{
			src:  "t1 { a : t2 { } }\nt2 { b : t1 { } }\nconnections { x : t1 { } }\n",
			want: `p.conf:1:10: reference "t2" leads to a reference loop`,
		},
	}
	for _, tt := range tests {
		start := time.Now()
		f := LoadFile(mapFS(map[string]string{"p.conf": tt.src}), "p.conf", Options{})
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %v", d)
		}
		errs := Errors(f.Err)
		if len(errs) == 0 || len(errs) > maxErrors+1 {
			t.Fatalf("%d errors", len(errs))
		}
		found := false
		for _, e := range errs {
			found = found || strings.HasPrefix(e.Error(), tt.want)
		}
		if !found {
			t.Errorf("no error %q in\n%v", tt.want, f.Err)
		}
	}
}
