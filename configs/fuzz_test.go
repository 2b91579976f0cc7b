package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// format writes a tree back in the settings syntax, every value quoted.
func format(s *Section) string {
	var b strings.Builder
	var walk func(s *Section, indent string)
	walk = func(s *Section, indent string) {
		for _, kv := range s.Keys {
			if kv.Null {
				b.WriteString(indent + kv.Key + " =\n")
				continue
			}
			r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r", `\r`, "\n", `\n`)
			b.WriteString(indent + kv.Key + ` = "` + r.Replace(kv.Value) + "\"\n")
		}
		for _, c := range s.Sections {
			b.WriteString(indent + c.Name)
			for i, ref := range c.Refs {
				if i == 0 {
					b.WriteString(" : ")
				} else {
					b.WriteString(", ")
				}
				b.WriteString(ref.Name)
			}
			b.WriteString(" {\n")
			walk(c, indent+"  ")
			b.WriteString(indent + "}\n")
		}
	}
	walk(s, "")
	return b.String()
}

func checkErrors(t *testing.T, err error) {
	t.Helper()
	for _, e := range Errors(err) {
		var pe *Error
		if !errors.As(e, &pe) {
			t.Fatalf("error %v is a %T, not an *Error", e, e)
		}
		if pe.File == "" || pe.Line < 0 || pe.Col < 0 || (pe.Line > 0 && pe.Col == 0) || pe.Msg == "" {
			t.Fatalf("error without a proper position: %#v", pe)
		}
	}
}

func fuzzSeeds(f *testing.F) {
	seeds := []string{
		"",
		"a = b\n",
		"connections {\n c { local_addrs = a, b\n local { certs = c.pem } children { x { } } } }\n",
		"a : b, c.d {\n include inc.conf\n}\nb { k = \"v\\\"\\n\" }\n",
		"connections { a : connections.a.children { children { } } }\n",
		"include  = x\n",
		"k = \"unterminated",
		"connections { a { btns { enabled = yes\n peers = none\n } children { c { btns { latch = x } } } } }\n",
		"x { y : x.y { } }\nconnections : x { }\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	for _, pattern := range []string{"testdata/golden/*/swanctl.conf", "testdata/example.conf"} {
		files, _ := filepath.Glob(pattern)
		for _, name := range files {
			if data, err := os.ReadFile(name); err == nil {
				f.Add(data)
			}
		}
	}
}

// FuzzParse feeds any bytes to the parser, the mapping and LoadFile: none
// may panic, every error must be an *Error with a position, and a parsed
// tree written back and parsed again must give the same tree.
func FuzzParse(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		defer func() {
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %v", d)
			}
		}()
		fsys := fstest.MapFS{
			"p/main.conf":  {Data: data},
			"p/inc.conf":   {Data: data},
			"p/x509/c.pem": {Data: []byte("CERT")},
		}
		root, err := ParseFile(fsys, "p/main.conf")
		if err != nil {
			checkErrors(t, err)
			return
		}
		again, err := ParseFile(fstest.MapFS{"q.conf": {Data: []byte(format(root))}}, "q.conf")
		if err != nil {
			t.Fatalf("written back tree does not parse: %v\n%s", err, format(root))
		}
		if a, b := render(root), render(again); a != b {
			t.Fatalf("tree changed when written back\n was: %s\n now: %s", a, b)
		}
		msgs, err := Swanctl(fsys, root, Dirs{})
		checkErrors(t, err)
		for _, m := range msgs {
			if m.Body == nil {
				t.Fatalf("message %q without body", m.Name)
			}
		}
		file := LoadFile(fsys, "p/main.conf", Options{})
		checkErrors(t, file.Err)
		switch {
		case err != nil && file.Err == nil:
			t.Fatalf("Swanctl failed (%v), LoadFile did not", err)
		case file.Err != nil && file.Conns != nil:
			t.Fatalf("file error %v with %d connections", file.Err, len(file.Conns))
		case file.Err == nil && len(file.Conns) != len(msgs):
			t.Fatalf("%d connections from %d messages", len(file.Conns), len(msgs))
		}
		for _, c := range file.Conns {
			if c.Body.Get("btns") != nil {
				t.Fatalf("btns section left in %s", c.Name)
			}
		}
	})
}
