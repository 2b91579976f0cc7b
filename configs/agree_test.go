package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// agreeCase is a swanctl.conf (and the files beside it) for which the
// requests of the real swanctl and of Swanctl must be equal. "{{DIR}}" in
// any file is replaced by the absolute directory the files are written to.
type agreeCase struct {
	name  string
	files map[string]string
	// fail: swanctl rejects the file (or a connection of it) and so must
	// btnsd.
	fail bool
	// deviation: btnsd rejects what swanctl accepts (on purpose, see
	// doc.go); the test checks that Swanctl or ParseFile fails.
	deviation bool
}

var agreeCases = []agreeCase{
	{name: "grammar corners", files: map[string]string{"swanctl.conf": `
connections {
	b
	{
		remote_addrs = x   y,z	w # comment
		local_addrs = "  a ,b  " , 'c, d' , "e
		proposals = , ,
		esp_proposals = ""
		vips =
		pools = a'b,c
	}
	c { include = x
		includes = y
		weird = "a\tb\"c\\d\
e" tail # done
	}
}
`}},
	{name: "one-line section swallows", files: map[string]string{"swanctl.conf": "connections { a { version = 2 } b { version = 1 rekey_time = 1h } }\n"}},
	{name: "one-line sections closing too often", fail: true, files: map[string]string{"swanctl.conf": "connections {\n a { version = 1 children { c { mode = tunnel } } }\n}\n"}},
	{name: "comments and lone CRs", files: map[string]string{"swanctl.conf": "connections {\n a {\n# c\rversion = 1\n   # d\rmobike = no\n\t# e\r\n x = 1 # f\ry = 2\n b { }\t# g\rz = 3\n }\n c : # h\rconnections.a {\n }\n}\n"}},
	{name: "CRLF and CR", files: map[string]string{"swanctl.conf": "connections {\r\n a {\r\n  version = 2\r\n  local_addrs = a\rb\r\n }\r\n}\r\n"}},
	{name: "include corners", files: map[string]string{
		"swanctl.conf":        "connections {\n include conf.d/*.conf\n include \"sp ace.conf\"# c\n include /{{DIR}}/abs\\ x.conf\n}\n",
		"conf.d/b.conf":       "b { version = 2 }\n",
		"conf.d/a.conf":       "a { version = 1\n include ../inc/rel.conf\n}\n",
		"conf.d/.hidden.conf": "h { }\n",
		"inc/rel.conf":        "rel = yes\n",
		"sp ace.conf":         "sp { }\n",
		"abs x.conf":          "abs { }\n",
	}},
	{name: "include glob order", files: map[string]string{
		"swanctl.conf": "connections {\n c {\n include */x.conf\n }\n}\n",
		"a/x.conf":     "k = a\nfrom_a = 1\n",
		"a-b/x.conf":   "k = a-b\nfrom_ab = 1\n",
	}},
	{name: "merging", files: map[string]string{"swanctl.conf": `
connections {
	a {
		version = 1
		local { auth = psk }
		children { c1 { mode = tunnel } }
	}
	b { }
	a {
		version = 2
		unique = never
		remote { auth = psk }
		children { c0 { } c1 { mode = transport } }
	}
}
connections { c { } }
`}},
	{name: "templates", files: map[string]string{"swanctl.conf": `
conn-defaults {
	version = 2
	proposals = aes256-sha256-modp2048
	local { auth = pubkey }
	children { net { local_ts = 10.0.0.0/8 } }
}
eap-defaults {
	remote-eap { auth = eap-tls }
	rekey_time = 1h
}
child-defaults {
	esp_proposals = aes128gcm16
	mode = tunnel
}
connections {
	a : conn-defaults, eap-defaults {
		version = 1
		rekey_time =
		children {
			net : child-defaults { mode = transport }
			other : child-defaults { }
		}
	}
	b : connections.a {
		remote_addrs = b.example
		local { id = b }
	}
	c : connections.b, child-defaults { }
}
`}},
	{name: "references on children and ancestors", files: map[string]string{"swanctl.conf": `
tpl { children { x { mode = pass } } }
kids { y { mode = drop } z { } }
connections : more {
	a : tpl {
		children : kids { z { start_action = trap } }
	}
}
more {
	m { version = 2 }
	a { extra = from-more }
}
`}},
	{name: "self reference", files: map[string]string{"swanctl.conf": "connections {\n a : connections.a { version = 1 }\n b : connections.c { x = b }\n c : connections.b { y = c }\n}\n"}},
	{name: "list keys in any case and section", files: map[string]string{"swanctl.conf": `
connections {
	a {
		LOCAL_ADDRS = a, b
		Groups = g1
		local { cert_policy = 1.2.3, 4.5.6 groups = x,y }
		remote { Cert_Policy = 7 }
		children { c { Local_TS = 1.2.3.4/32 , dynamic REMOTE_ts = x } }
	}
}
`}},
	{name: "file keys", files: map[string]string{
		"swanctl.conf": `
connections {
	a {
		local {
			certs = local.pem, sub/other.pem
			pubkeys = 0x30:0a:Ff, 0Xabc, 0sMDAw, 0SZm9vYmFy===, 0s!!!!, 0x
		}
		remote {
			cacerts = ca.pem, /{{DIR}}/abs.pem
			pubkeys = peer.pub
			cert-1 { file = /etc/ignored/by/swanctl.pem }
		}
	}
}
`,
		"x509/local.pem":     "LOCAL CERT\n",
		"x509/sub/other.pem": "OTHER CERT\n",
		"x509ca/ca.pem":      "CA CERT\n",
		"abs.pem":            "ABSOLUTE\n",
		"pubkey/peer.pub":    "PEER KEY\n",
	}},
	{name: "empty file", files: map[string]string{
		"swanctl.conf":   "connections { a { local { certs = empty.pem } } }\n",
		"x509/empty.pem": "",
	}},
	{name: "syntax error", fail: true, files: map[string]string{"swanctl.conf": "connections {\n a { }\n b.c { }\n}\n"}},
	{name: "unterminated string", fail: true, files: map[string]string{"swanctl.conf": "connections {\n a { x = \"abc }\n}\n"}},
	{name: "include with two blanks before equals", fail: true, files: map[string]string{"swanctl.conf": "include  = x\n"}},
	{name: "missing cert", fail: true, files: map[string]string{"swanctl.conf": "connections { a { local { certs = nope.pem } } }\n"}},
	{name: "missing include (swanctl ignores it)", deviation: true, files: map[string]string{"swanctl.conf": "connections { a { } }\ninclude nope.conf\n"}},
	{name: "dangling reference (swanctl ignores it)", deviation: true, files: map[string]string{"swanctl.conf": "connections { a : nope { } }\n"}},
	{name: "key and section of one name", deviation: true, files: map[string]string{"swanctl.conf": "connections { a { children = x\n children { c { } } } }\n"}},
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		data = strings.ReplaceAll(data, "/{{DIR}}", dir)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// oursFromDisk maps dir/swanctl.conf with the real file system as the FS.
func oursFromDisk(dir, file string) ([]Message, error) {
	return SwanctlFile(os.DirFS("/"), strings.TrimPrefix(filepath.ToSlash(filepath.Join(dir, file)), "/"), Dirs{})
}

func TestSwanctlAgreement(t *testing.T) {
	for _, tc := range agreeCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, tc.files)
			got, out := runSwanctl(t, filepath.Join(dir, "swanctl.conf"))
			swanctlFailed := strings.Contains(out, "invalid config file") || strings.Contains(out, "failed")
			msgs, err := oursFromDisk(dir, "swanctl.conf")
			switch {
			case tc.deviation:
				if swanctlFailed {
					t.Fatalf("swanctl failed on a deviation case:\n%s", out)
				}
				if err == nil {
					t.Fatalf("btnsd accepted a deviation case")
				}
				t.Logf("deviation as intended: %v", err)
				return
			case tc.fail:
				if !swanctlFailed {
					t.Errorf("swanctl did not fail:\n%s", out)
				}
				if err == nil {
					t.Fatalf("btnsd did not fail")
				}
				t.Logf("both fail:\nswanctl: %s\nbtnsd: %v", strings.TrimSpace(out), err)
				return
			case swanctlFailed:
				t.Fatalf("swanctl failed:\n%s", out)
			case err != nil:
				t.Fatalf("btnsd failed where swanctl did not: %v\nswanctl said:\n%s", err, out)
			case len(got) == 0:
				t.Fatalf("no load-conn request: the case tests nothing\nswanctl said:\n%s", out)
			}
			if len(got) != len(msgs) {
				t.Errorf("swanctl sent %d load-conn requests, btnsd %d\nswanctl said:\n%s", len(got), len(msgs), out)
			}
			for i := 0; i < len(got) && i < len(msgs); i++ {
				if !got[i].Equal(msgs[i].Msg()) {
					t.Errorf("request %d differs\nswanctl:\n%s\nbtnsd:\n%s", i, got[i].Format(), msgs[i].Msg().Format())
				}
			}
		})
	}
}
