package configs

import (
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func names(conns []*Conn) []string {
	var out []string
	for _, c := range conns {
		out = append(out, c.Name)
	}
	return out
}

func TestLoadDir(t *testing.T) {
	fsys := mapFS(map[string]string{
		"pol/10-good.conf":    "connections {\n a { }\n b { btns { enabled = yes } } }\n",
		"pol/20-bad.conf":     "connections {\n c { }\n d.e { } }\n",
		"pol/30-invalid.conf": "connections {\n f { btns { enabled = perhaps } } }\n",
		"pol/40-more.conf":    "connections {\n g { }\n include inc/*.inc\n}\n",
		"pol/inc/h.inc":       "h { }\n",
		"pol/.hidden.conf":    "connections { x { } }\n",
		"pol/notes.txt":       "connections { y { } }\n",
		"pol/conf.d/z.conf":   "connections { z { } }\n",
		"pol/dir.conf/x":      "",
		"elsewhere.conf":      "connections { w { } }\n",
	})
	s, errs := LoadDir(fsys, "/pol", Options{})
	if got, want := names(s.Conns), []string{"a", "b", "g", "h"}; !slices.Equal(got, want) {
		t.Errorf("connections %v, want %v", got, want)
	}
	var files []string
	for _, f := range s.Files {
		files = append(files, f.Name)
	}
	if want := []string{"pol/10-good.conf", "pol/20-bad.conf", "pol/30-invalid.conf", "pol/40-more.conf"}; !slices.Equal(files, want) {
		t.Errorf("files %v, want %v", files, want)
	}
	if len(errs) != 2 {
		t.Fatalf("errors: %v", errs)
	}
	if !strings.HasPrefix(errs[0].Error(), "pol/20-bad.conf:3:3: unexpected '.'") ||
		!strings.HasPrefix(errs[1].Error(), `pol/30-invalid.conf:2:23: invalid value "perhaps"`) {
		t.Errorf("errors:\n%v\n%v", errs[0], errs[1])
	}
	if f := s.File("pol/20-bad.conf"); f.Err == nil || f.Conns != nil {
		t.Errorf("bad file: %+v", f)
	}
	if c := s.Conn("b"); c == nil || !c.Policy.Enabled || c.File != "pol/10-good.conf" || c.Pos.String() != "pol/10-good.conf:3:2" {
		t.Errorf("conn b: %+v", c)
	}
	if c := s.Conn("h"); c == nil || c.File != "pol/40-more.conf" || c.Pos.File != "pol/inc/h.inc" {
		t.Errorf("conn h: %+v", c)
	}
	if s.Conn("x") != nil || s.Conn("nope") != nil || s.File("nope") != nil {
		t.Error("found what is not there")
	}
}

func TestLoadDirMissing(t *testing.T) {
	s, errs := LoadDir(mapFS(nil), "nope", Options{})
	if len(errs) != 1 || !errors.Is(errs[0], fs.ErrNotExist) || len(s.Conns) != 0 {
		t.Fatalf("got %v, %v", s, errs)
	}
	if !strings.HasPrefix(errs[0].Error(), "nope: cannot read policy directory") {
		t.Errorf("error %v", errs[0])
	}
}

func TestDuplicates(t *testing.T) {
	fsys := mapFS(map[string]string{
		"d/a.conf": "connections {\n one { }\n two { }\n}\n",
		"d/b.conf": "connections {\n\n three { }\n one { }\n}\n",
		"d/c.conf": "connections {\n four { }\n}\n",
		"d/d.conf": "connections {\n one { }\n}\n",
	})
	s, errs := LoadDir(fsys, "d", Options{})
	if got, want := names(s.Conns), []string{"four"}; !slices.Equal(got, want) {
		t.Errorf("connections %v, want %v", got, want)
	}
	want := []string{
		`d/a.conf:2:2: connection "one" is also defined at d/b.conf:4:2, d/d.conf:2:2`,
		`d/b.conf:4:2: connection "one" is also defined at d/a.conf:2:2, d/d.conf:2:2`,
		`d/d.conf:2:2: connection "one" is also defined at d/a.conf:2:2, d/b.conf:4:2`,
	}
	if len(errs) != len(want) {
		t.Fatalf("errors %v", errs)
	}
	for i, e := range errs {
		if !strings.HasPrefix(e.Error(), want[i]) || !errors.Is(e, ErrDuplicate) {
			t.Errorf("error %d: %v, want %s", i, e, want[i])
		}
	}
	if f := s.File("d/b.conf"); f.Err == nil || f.Conns != nil {
		t.Errorf("d/b.conf should be bad: %+v", f)
	}

	// The daemon keeps the last good version of a file that went bad and
	// checks the names of the mix again; NewSet must not touch its input.
	good := LoadFile(fsys, "d/a.conf", Options{})
	clash := LoadFile(fsys, "d/d.conf", Options{})
	s2, dups := NewSet([]*File{good, clash})
	if len(dups) != 2 || len(s2.Conns) != 0 {
		t.Errorf("NewSet: %v %v", names(s2.Conns), dups)
	}
	if good.Err != nil || len(good.Conns) != 2 {
		t.Errorf("NewSet modified its input: %+v", good)
	}
}

func TestHashes(t *testing.T) {
	fsys := fstest.MapFS{
		"p/a.conf":       {Data: []byte("connections {\n a { local { certs = me.pem } }\n include more.inc\n}\n")},
		"p/more.inc":     {Data: []byte("b { version = 2 }\n")},
		"p/x509/me.pem":  {Data: []byte("CERT 1")},
		"p/other.conf":   {Data: []byte("connections { c { } }\n")},
		"p/comment.conf": {Data: []byte("connections { c { } }\n")},
	}
	load := func() *File {
		f := LoadFile(fsys, "p/a.conf", Options{})
		if f.Err != nil {
			t.Fatal(f.Err)
		}
		return f
	}
	f0 := load()
	if f1 := load(); f1.Hash != f0.Hash || f1.Conns[0].Hash != f0.Conns[0].Hash {
		t.Fatal("hashes are not stable")
	}
	fsys["p/x509/me.pem"].Data = []byte("CERT 2")
	f1 := load()
	if f1.Hash == f0.Hash || f1.Conns[0].Hash == f0.Conns[0].Hash || f1.Conns[1].Hash != f0.Conns[1].Hash {
		t.Error("a certificate change must change the file's hash and only its connection's")
	}
	fsys["p/more.inc"].Data = []byte("b { version = 1 }\n")
	f2 := load()
	if f2.Hash == f1.Hash || f2.Conns[0].Hash != f1.Conns[0].Hash || f2.Conns[1].Hash == f1.Conns[1].Hash {
		t.Error("an include change must change the file's hash and only its connection's")
	}
	fsys["p/a.conf"].Data = []byte("# a comment\nconnections {\n a { local { certs = me.pem } }\n include more.inc\n}\n")
	f3 := load()
	if f3.Hash == f2.Hash || f3.Conns[0].Hash != f2.Conns[0].Hash {
		t.Error("a comment changes the file, not the connection")
	}
	// Same body in another file: the hash covers name, body and policy.
	c1 := LoadFile(fsys, "p/other.conf", Options{}).Conns[0]
	c2 := LoadFile(fsys, "p/comment.conf", Options{}).Conns[0]
	if c1.Hash != c2.Hash {
		t.Error("equal connections in two files hash differently")
	}
}

func TestDiff(t *testing.T) {
	fsys := fstest.MapFS{
		"d/a.conf": {Data: []byte("connections {\n a { }\n b { }\n c { }\n}\n")},
	}
	old, _ := LoadDir(fsys, "d", Options{})
	load, unload := Diff(nil, old)
	if !slices.Equal(names(load), []string{"a", "b", "c"}) || unload != nil {
		t.Errorf("from nothing: load %v unload %v", names(load), unload)
	}
	fsys["d/a.conf"].Data = []byte("connections {\n a { }\n b { version = 2 }\n d { }\n}\n")
	cur, _ := LoadDir(fsys, "d", Options{})
	load, unload = Diff(old, cur)
	if !slices.Equal(names(load), []string{"b", "d"}) || !slices.Equal(unload, []string{"c"}) {
		t.Errorf("load %v unload %v", names(load), unload)
	}
	if load, unload := Diff(cur, cur); load != nil || unload != nil {
		t.Errorf("no change: load %v unload %v", names(load), unload)
	}
}
