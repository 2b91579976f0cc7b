package configs

import (
	"errors"
	"io/fs"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

// render prints a tree on one line: keys as k="v" (k=<null> for "k ="),
// sections as name:ref,ref{...}.
func render(s *Section) string {
	var b strings.Builder
	var walk func(s *Section)
	walk = func(s *Section) {
		for _, kv := range s.Keys {
			if kv.Null {
				b.WriteString(kv.Key + "=<null> ")
			} else {
				b.WriteString(kv.Key + "=" + strconv.Quote(kv.Value) + " ")
			}
		}
		for _, c := range s.Sections {
			b.WriteString(c.Name)
			for i, r := range c.Refs {
				if i == 0 {
					b.WriteString(":")
				} else {
					b.WriteString(",")
				}
				b.WriteString(r.Name)
			}
			b.WriteString("{ ")
			walk(c)
			b.WriteString("} ")
		}
	}
	walk(s)
	return strings.TrimSpace(b.String())
}

func mapFS(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for k, v := range files {
		m[k] = &fstest.MapFile{Data: []byte(v)}
	}
	return m
}

func TestParseGrammar(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		files map[string]string // more files, for includes
		want  string
	}{
		{name: "empty", src: "", want: ""},
		{name: "comments and blank lines", src: "# a comment\n\n   # another\n\t\n", want: ""},
		{name: "setting", src: "key = value\n", want: `key="value"`},
		{name: "setting at end of file", src: "key = value", want: `key="value"`},
		{name: "words joined by one space", src: "key =   a  \t b   c  \n", want: `key="a b c"`},
		{name: "quoted value kept", src: `key = "a  b	c"` + "\n", want: `key="a  b\tc"`},
		{name: "escapes", src: `key = "q\"b\\n\n\t\rx\z"` + "\n", want: `key="q\"b\\n\n\t\rxz"`},
		{name: "line continuation in quotes", src: "key = \"a\\\n  b\\\r\nc\"\n", want: `key="a  bc"`},
		{name: "newline inside quotes", src: "key = \"a\nb\"\n", want: `key="a\nb"`},
		{name: "raw CR dropped in quotes", src: "key = \"a\r\nb\"\n", want: `key="a\nb"`},
		{name: "quoted and unquoted parts", src: `key = a "b  c"d e` + "\n", want: `key="a b  c d e"`},
		{name: "empty quotes are a value", src: `key = ""` + "\n", want: `key=""`},
		{name: "no value", src: "key =\n", want: `key=<null>`},
		{name: "no value at end of file", src: "key =", want: `key=<null>`},
		{name: "comment ends the value", src: "key = a b # c d\n", want: `key="a b"`},
		{name: "hash inside quotes", src: `key = "a # b"` + "\n", want: `key="a # b"`},
		{name: "equals and colons in values", src: "key = a=b:c,d.e{f\n", want: `key="a=b:c,d.e{f"`},
		{name: "keys with odd characters", src: "k-1_@!/x = v\n", want: `k-1_@!/x="v"`},
		{name: "CRLF", src: "a {\r\n  k = v\r\n}\r\n", want: `a{ k="v" }`},
		{name: "CR splits value words", src: "k = a\rb\n", want: `k="a b"`},
		{name: "comment from '#' runs to LF over CR", src: "# c\rk = v\n", want: ``},
		{name: "comment after blanks ends at CR", src: "  # c\rk = v\n", want: `k="v"`},
		{name: "comment after value ends at LF", src: "x = 1 # c\rk = v\n", want: `x="1"`},
		{name: "comment without LF ends at CR", src: "# c\rk = v", want: `k="v"`},
		{name: "CR then blanks then comment", src: "\r  # c\rk = v\n", want: ``},
		{name: "section", src: "s {\n  k = v\n}\n", want: `s{ k="v" }`},
		{name: "brace on the next line", src: "s\n{\n  k = v\n}\n", want: `s{ k="v" }`},
		{name: "brace after comment", src: "s # c\n{\n}\n", want: `s{ }`},
		{name: "one-line section", src: "s { k = v }\n", want: `s{ k="v" }`},
		{name: "one-line section swallows later settings", src: "s { a = 1 b = 2 }\n", want: `s{ a="1 b = 2" }`},
		{name: "nested", src: "a { b { c { k = v } } x = y\n}\n", want: `a{ x="y" b{ c{ k="v" } } }`},
		{name: "keys before sections", src: "s { t { } k = v\n}\n", want: `s{ k="v" t{ } }`},
		{name: "key and section of one name", src: "s { k = v\n k { } }\n", want: `s{ k="v" k{ } }`},
		{
			name: "merge: sections extended, values replaced in place",
			src:  "a { x = 1\n y = 2\n b { p = 1\n}\n}\nz = 0\na { x = 3\n c { }\n b { q = 2\n}\n}\n",
			want: `z="0" a{ x="3" y="2" b{ p="1" q="2" } c{ } }`,
		},
		{name: "null replaces a value", src: "k = v\nk =\n", want: `k=<null>`},
		{name: "value replaces null", src: "k =\nk = v\n", want: `k="v"`},
		{name: "references", src: "a : b, c.d.e {\n}\n", want: `a:b,c.d.e{ }`},
		{name: "references across lines with comments", src: "a : # x\n  b, # y\n  c\n{\n}\n", want: `a:b,c{ }`},
		{name: "reference without spaces", src: "a:b,c{}\n", want: `a:b,c{ }`},
		{name: "duplicate reference", src: "a : b, b {\n}\na : c, b {\n}\n", want: `a:b,c{ }`},
		{name: "key named include", src: "include = x\n", want: `include="x"`},
		{name: "key named includes", src: "includes = x\n", want: `includes="x"`},
		{name: "section named include", src: "include\n{\n}\n", want: `include{ }`},
		{
			name:  "include",
			src:   "a = 1\ninclude inc.conf\nb = 2\n",
			files: map[string]string{"inc.conf": "x = y\n"},
			want:  `a="1" x="y" b="2"`,
		},
		{
			name:  "include inside a section",
			src:   "s {\n  include inc.conf\n}\n",
			files: map[string]string{"inc.conf": "x = y\nt { }\n"},
			want:  `s{ x="y" t{ } }`,
		},
		{
			name:  "include closes a section",
			src:   "s {\n  include inc.conf\n  k = v\n",
			files: map[string]string{"inc.conf": "x = y\n}\n"},
			want:  `k="v" s{ x="y" }`,
		},
		{
			name:  "include ending in a value",
			src:   "include inc.conf\nb = 2\n",
			files: map[string]string{"inc.conf": "x = y"},
			want:  `x="y" b="2"`,
		},
		{
			name: "glob sorted, hidden and directories skipped",
			src:  "include d/*.conf\n",
			files: map[string]string{
				"d/b.conf":       "b = 1\n",
				"d/a.conf":       "a = 1\n",
				"d/.hidden.conf": "h = 1\n",
				"d/c.txt":        "c = 1\n",
				"d/e.conf/x":     "e = 1\n",
			},
			want: `a="1" b="1"`,
		},
		{
			name:  "glob matching hidden files on purpose",
			src:   "include d/.*.conf\n",
			files: map[string]string{"d/.h.conf": "h = 1\n"},
			want:  `h="1"`,
		},
		{name: "glob matching nothing", src: "include none/*.conf\nk = v\n", want: `k="v"`},
		{
			name: "glob sorts whole paths",
			src:  "include */x.conf\n",
			files: map[string]string{
				"a/x.conf":   "k = a\n",
				"a-b/x.conf": "k = a-b\n",
			},
			want: `k="a"`, // a-b/x.conf (first, '-' < '/') then a/x.conf
		},
		{
			name:  "nested include relative to the including file",
			src:   "include sub/one.conf\n",
			files: map[string]string{"sub/one.conf": "include two.conf\n", "sub/two.conf": "two = 2\n"},
			want:  `two="2"`,
		},
		{
			name:  "absolute include from the root of the fs",
			src:   "include /etc/x.conf\n",
			files: map[string]string{"etc/x.conf": "x = 1\n"},
			want:  `x="1"`,
		},
		{
			name:  "quoted include",
			src:   `include "my file.conf"` + "\n",
			files: map[string]string{"my file.conf": "x = 1\n"},
			want:  `x="1"`,
		},
		{
			name:  "escaped include",
			src:   `include my\ file\#1.conf` + "\n",
			files: map[string]string{"my file#1.conf": "x = 1\n"},
			want:  `x="1"`,
		},
		{
			name:  "include ended by a comment",
			src:   "include inc.conf# c\n",
			files: map[string]string{"inc.conf": "x = 1\n"},
			want:  `x="1"`,
		},
		{
			name:  "include at end of file",
			src:   "include inc.conf",
			files: map[string]string{"inc.conf": "x = 1\n"},
			want:  `x="1"`,
		},
		{
			name:  "include with tab",
			src:   "include\tinc.conf\n",
			files: map[string]string{"inc.conf": "x = 1\n"},
			want:  `x="1"`,
		},
		{
			name:  "same file included twice",
			src:   "include inc.conf\ninclude inc.conf\n",
			files: map[string]string{"inc.conf": "x = 1\n"},
			want:  `x="1"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"main.conf": tt.src}
			for k, v := range tt.files {
				files[k] = v
			}
			fsys := mapFS(files)
			for k := range tt.files {
				if strings.HasSuffix(k, "/x") { // a directory named like a file
					delete(fsys, k)
					fsys[strings.TrimSuffix(k, "/x")] = &fstest.MapFile{Mode: fs.ModeDir}
				}
			}
			root, err := ParseFile(fsys, "main.conf")
			if err != nil {
				t.Fatalf("ParseFile: %v", err)
			}
			if got := render(root); got != tt.want {
				t.Errorf("tree\n got: %s\nwant: %s", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		files map[string]string
		want  string // "file:line:col: substring of the message"
	}{
		{name: "closing brace at top", src: "k = v\n}\n", want: "main.conf:2:1: unexpected '}': no section"},
		{name: "unclosed section", src: "a {\n b {\n }\n", want: `main.conf:4:1: unexpected end of file: section "a" opened at main.conf:1:1 is not closed, expected '}'`},
		{name: "two names", src: "a b = c\n", want: `main.conf:1:3: unexpected name "b" after "a", expected '{' (a section), ':' (references) or '=' (a setting)`},
		{name: "dot in a name", src: "a.b = c\n", want: `main.conf:1:2: unexpected '.' after "a": names cannot contain`},
		{name: "comma in a name", src: "a,b = c\n", want: `main.conf:1:2: unexpected ',' after "a"`},
		{name: "dot at statement start", src: ".a = c\n", want: `main.conf:1:1: unexpected '.', expected a key or section name`},
		{name: "name then end of file", src: "a", want: `main.conf:1:2: unexpected end of file after "a", expected '{', ':' or '='`},
		{name: "equals without name", src: "= v\n", want: `main.conf:1:1: unexpected '=', expected a key or section name`},
		{name: "brace without name", src: "{\n}\n", want: `main.conf:1:1: unexpected '{', expected a key or section name`},
		{name: "quoted name", src: "\"a\" = b\n", want: `main.conf:1:1: unexpected quoted string`},
		{name: "quote after name", src: "a \"b\"\n", want: `main.conf:1:3: unexpected quoted string`},
		{name: "unterminated string", src: "a {\n k = \"abc\n}\n", want: `main.conf:2:6: unterminated quoted string in the value of "k"`},
		{name: "backslash at end of file", src: "k = \"abc\\", want: `main.conf:1:5: unterminated quoted string (backslash at end of file)`},
		{name: "missing reference", src: "a : {\n}\n", want: `main.conf:1:5: unexpected '{' after ':' in the header of section "a", expected the name of a section`},
		{name: "two references without comma", src: "a : b c {\n}\n", want: `main.conf:1:7: unexpected name "c" in the header of section "a", expected ',' and another reference, or '{'`},
		{name: "reference then end of file", src: "a : b", want: `main.conf:1:6: unexpected end of file in the header of section "a"`},
		{name: "reference then equals", src: "a : b = c\n", want: `main.conf:1:7: unexpected '=' in the header of section "a"`},
		{name: "trailing comma in references", src: "a : b, {\n}\n", want: `main.conf:1:8: unexpected '{' after ':'`},
		{name: "dot ending a reference", src: "a : b. {\n}\n", want: `main.conf:1:6: unexpected '.' in the header of section "a"`},
		{name: "include with two blanks before equals", src: "include  = x\n", want: `main.conf:1:1: missing file name after include`},
		{name: "include without pattern", src: "include \n", want: `main.conf:1:1: missing file name after include`},
		{name: "missing include", src: "\n  include nope.conf\n", want: `main.conf:2:3: include "nope.conf": file nope.conf not found`},
		{name: "include of a directory", src: "include d\n", files: map[string]string{"d/x.conf": ""}, want: `main.conf:1:1: include "d": d is a directory`},
		{name: "include outside the fs", src: "include ../x.conf\n", want: `main.conf:1:1: include "../x.conf": path "../x.conf" is outside`},
		{name: "include loop", src: "include main.conf\n", want: `main.conf:1:1: include loop: main.conf -> main.conf`},
		{
			name:  "indirect include loop",
			src:   "include a.conf\n",
			files: map[string]string{"a.conf": "x = 1\ninclude b.conf\n", "b.conf": "include a.conf\n"},
			want:  `b.conf:1:1: include loop: main.conf -> a.conf -> b.conf -> a.conf`,
		},
		{name: "glob include loop", src: "include *.conf\n", want: `main.conf:1:1: include loop: main.conf -> main.conf`},
		{name: "bad glob", src: "include [.conf\n", want: `main.conf:1:1: include "[.conf": bad pattern`},
		{name: "error in included file", src: "include a.conf\n", files: map[string]string{"a.conf": "\n\nx y\n"}, want: `a.conf:3:3: unexpected name "y" after "x"`},
		{name: "string open at end of included file", src: "include a.conf\n\"\n", files: map[string]string{"a.conf": "k = \"x\n"}, want: `a.conf:1:5: unterminated quoted string`},
		{name: "NUL byte", src: "a {\n k = v\x00\n}\n", want: `main.conf:2:7: NUL byte`},
		{name: "nesting too deep", src: strings.Repeat("a {\n", 70), want: `main.conf:65:1: sections nested more than 64 deep`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"main.conf": tt.src}
			for k, v := range tt.files {
				files[k] = v
			}
			_, err := ParseFile(mapFS(files), "main.conf")
			if err == nil {
				t.Fatalf("ParseFile: no error, want %q", tt.want)
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is a %T, not an *Error", err, err)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error\n got: %s\nwant: %s...", err, tt.want)
			}
		})
	}
}

func TestParseMissingFile(t *testing.T) {
	_, err := ParseFile(mapFS(nil), "nope.conf")
	var pe *Error
	if !errors.As(err, &pe) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want an *Error wrapping fs.ErrNotExist", err)
	}
	if got, want := err.Error(), "nope.conf: cannot read policy file: file does not exist"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParsePositions(t *testing.T) {
	src := "# header\nconnections {\n\tconn : tpl {\n\t\tkey  =  \"v\" w\n\t\tnull =\n\t}\n}\ntpl {\n}\n"
	root, err := ParseFile(mapFS(map[string]string{"p/main.conf": src}), "p/main.conf")
	if err != nil {
		t.Fatal(err)
	}
	conn := root.Lookup("connections.conn")
	if conn == nil {
		t.Fatal("no connections.conn")
	}
	check := func(what string, got Pos, want string) {
		t.Helper()
		if got.String() != want {
			t.Errorf("%s at %s, want %s", what, got, want)
		}
	}
	check("root", root.Pos, "p/main.conf")
	check("connections", root.Sub("connections").Pos, "p/main.conf:2:1")
	check("conn", conn.Pos, "p/main.conf:3:2")
	check("ref", conn.Refs[0].Pos, "p/main.conf:3:9")
	check("key", conn.Value("key").Pos, "p/main.conf:4:3")
	check("value", conn.Value("key").ValuePos, "p/main.conf:4:11")
	check("null", conn.Value("null").Pos, "p/main.conf:5:3")
	if conn.Value("key").Value != "v w" {
		t.Errorf("value %q", conn.Value("key").Value)
	}
}

func TestErrorString(t *testing.T) {
	e := &Error{File: "a.conf", Line: 3, Col: 7, Msg: "bad"}
	if e.Error() != "a.conf:3:7: bad" {
		t.Errorf("got %q", e.Error())
	}
	e = &Error{File: "a.conf", Msg: "bad"}
	if e.Error() != "a.conf: bad" {
		t.Errorf("got %q", e.Error())
	}
	l := ErrorList{{File: "a", Line: 1, Col: 1, Msg: "x"}, {File: "b", Line: 2, Col: 2, Msg: "y"}}
	if l.Error() != "a:1:1: x\nb:2:2: y" {
		t.Errorf("got %q", l.Error())
	}
	if got := Errors(l); len(got) != 2 {
		t.Errorf("Errors: %v", got)
	}
	if ErrorList(nil).Err() != nil {
		t.Error("empty list is not nil")
	}
}
