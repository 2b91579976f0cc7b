package configs

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/btnsd/btnsd/vici"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// Golden tests: each directory of testdata/golden holds a realistic
// swanctl.conf (with its certificates, keys and includes) and
//
//   - swanctl.json: the load-conn messages swanctl sends for it, in order;
//     TestGoldenAgainstSwanctl checks them against the real swanctl;
//   - btnsd.json: the connections LoadFile makes of it: body without the
//     btns sections, and policy.
//
// go test ./configs -run Golden -update rewrites both.

func goldenDirs(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("testdata", "golden", "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	return dirs
}

func encodeJSON(t *testing.T, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type goldenConn struct {
	Name   string    `json:"name"`
	Pos    string    `json:"pos"`
	Policy Policy    `json:"policy"`
	Body   *vici.Msg `json:"body"`
}

// checkText fails on values that JSON cannot hold (binary data such as
// DER from 0s/0x blobs): golden files are for text; binary cases belong in
// TestSwanctlAgreement.
func checkText(t *testing.T, m *vici.Msg) {
	t.Helper()
	for _, k := range m.Keys() {
		switch v := m.Get(k).(type) {
		case string:
			if !utf8.ValidString(v) {
				t.Fatalf("binary value in %s: not for golden files", k)
			}
		case []string:
			for _, s := range v {
				if !utf8.ValidString(s) {
					t.Fatalf("binary value in %s: not for golden files", k)
				}
			}
		case *vici.Msg:
			checkText(t, v)
		}
	}
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update to rewrite it); got:\n%s", path, got)
	}
}

func TestGolden(t *testing.T) {
	for _, dir := range goldenDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			fsys := os.DirFS(dir)
			root, err := ParseFile(fsys, "swanctl.conf")
			if err != nil {
				t.Fatal(err)
			}
			msgs, err := Swanctl(fsys, root, Dirs{})
			if err != nil {
				t.Fatal(err)
			}
			var all []*vici.Msg
			for _, m := range msgs {
				checkText(t, m.Body)
				all = append(all, m.Msg())
			}
			checkGolden(t, filepath.Join(dir, "swanctl.json"), encodeJSON(t, all))

			f := LoadFile(fsys, "swanctl.conf", Options{})
			if f.Err != nil {
				t.Fatal(f.Err)
			}
			var conns []goldenConn
			for _, c := range f.Conns {
				conns = append(conns, goldenConn{Name: c.Name, Pos: c.Pos.String(), Policy: c.Policy, Body: c.Body})
			}
			checkGolden(t, filepath.Join(dir, "btnsd.json"), encodeJSON(t, conns))
		})
	}
}

// TestGoldenAgainstSwanctl checks the golden swanctl.json files against
// what the installed swanctl sends.
func TestGoldenAgainstSwanctl(t *testing.T) {
	for _, dir := range goldenDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			abs, err := filepath.Abs(dir)
			if err != nil {
				t.Fatal(err)
			}
			got, out := runSwanctl(t, filepath.Join(abs, "swanctl.conf"))
			data, err := os.ReadFile(filepath.Join(dir, "swanctl.json"))
			if err != nil {
				t.Fatal(err)
			}
			var want []*vici.Msg
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("swanctl sent %d requests, golden has %d; swanctl said:\n%s", len(got), len(want), out)
			}
			for i := range got {
				if !got[i].Equal(want[i]) {
					t.Errorf("request %d\nswanctl:\n%s\ngolden:\n%s", i, got[i].Format(), want[i].Format())
				}
			}
		})
	}
}

func TestExample(t *testing.T) {
	f := LoadFile(os.DirFS("testdata"), "example.conf", Options{})
	if f.Err != nil {
		t.Fatal(f.Err)
	}
	if got := names(f.Conns); strings.Join(got, " ") != "lan backup office" {
		t.Errorf("connections %v", got)
	}
	lan, backup, office := f.Conn("lan"), f.Conn("backup"), f.Conn("office")
	if !lan.Policy.Enabled || lan.Policy.MaxSAs != 50 || lan.Policy.MaxSAsPerAddr != 2 || !lan.Policy.Children[0].Latch {
		t.Errorf("lan: %+v", lan.Policy)
	}
	if !backup.Policy.Anonymous || len(backup.Policy.Peers.Fingerprints) != 2 || backup.Policy.Children[0].OnBreak != Notify {
		t.Errorf("backup: %+v", backup.Policy)
	}
	if office.Policy.Enabled || office.Body.Section("local").List("certs") == nil {
		t.Errorf("office: %+v\n%s", office.Policy, office.Body.Format())
	}

	// doc.go shows the same file.
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var block []string
	in := false
	for _, l := range strings.Split(string(doc), "\n") {
		switch {
		case strings.HasPrefix(l, "// A complete example is in testdata/example.conf:"):
			in = true
		case in && strings.HasPrefix(l, "//\t"):
			block = append(block, strings.TrimPrefix(l, "//\t"))
		case in && l == "//" && len(block) > 0:
			block = append(block, "")
		case in && len(block) > 0:
			in = false
		}
	}
	example, err := os.ReadFile("testdata/example.conf")
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(strings.Join(block, "\n")); !strings.Contains(string(example), want) {
		t.Errorf("the example in doc.go and testdata/example.conf differ")
	}
}

// The example goes through swanctl too (with its btns sections, which
// only charon would reject).
func TestExampleAgainstSwanctl(t *testing.T) {
	abs, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	got, out := runSwanctl(t, filepath.Join(abs, "example.conf"))
	msgs, err := oursFromDisk(abs, "example.conf")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) || len(got) == 0 {
		t.Fatalf("swanctl sent %d requests, btnsd %d; swanctl said:\n%s", len(got), len(msgs), out)
	}
	for i := range got {
		if !got[i].Equal(msgs[i].Msg()) {
			t.Errorf("request %d\nswanctl:\n%s\nbtnsd:\n%s", i, got[i].Format(), msgs[i].Msg().Format())
		}
	}
}
