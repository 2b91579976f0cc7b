package configs

import (
	"flag"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"
)

type gen struct{ r *rand.Rand }

func (g gen) pick(s ...string) string { return s[g.r.Intn(len(s))] }

func (g gen) blank() string {
	return g.pick("", " ", "  ", "\t", " \t ", "\r", " \r ")
}

func (g gen) comment() string {
	if g.r.Intn(4) != 0 {
		return ""
	}
	return g.pick("", " ", "\t") + "#" + g.pick("", " c", " a = b", " x\ry = z", " {", " }\r")
}

func (g gen) name() string {
	if g.r.Intn(30) == 0 {
		return g.pick("certs", "pubkeys", "include")
	}
	return g.pick("a", "b", "c", "local_ts", "remote_addrs", "mode", "x-1", "proposals", "Groups")
}

func (g gen) value() string {
	var b strings.Builder
	for i := 0; i < 1+g.r.Intn(4); i++ {
		if i > 0 {
			b.WriteString(g.pick(" ", "  ", "\t", "\r", " \r"))
		}
		switch g.r.Intn(6) {
		case 0:
			b.WriteString(`"` + g.pick("a b", "x, y", `q\"r`, `\n\t`, "l1\\\nl2", "#h", "}", "", "a\rb", "'z'") + `"`)
		case 1:
			b.WriteString(g.pick("c.pem", "0x0a0b", "0sQUJD", "0X1", "'p, q'", "a,b", ",c,", "=", "{x", ":y"))
		default:
			b.WriteString(g.pick("v", "10.0.0.0/8", "dynamic[tcp/22]", "yes", "aes-sha256", "%any"))
		}
	}
	return b.String()
}

func (g gen) body(depth int, b *strings.Builder, ind string) {
	for i := 0; i < g.r.Intn(4); i++ {
		b.WriteString(ind + g.name() + g.blank() + "=" + g.blank())
		if g.r.Intn(8) != 0 {
			b.WriteString(g.value())
		}
		b.WriteString(g.blank() + g.comment() + "\n")
	}
	if depth > 0 {
		for i := 0; i < g.r.Intn(3); i++ {
			b.WriteString(ind + g.pick("s", "local", "remote-1", "children", "c1", "s") + g.blank())
			if g.r.Intn(5) == 0 {
				b.WriteString(":" + g.blank() + g.pick("tpl", "tpl.sub", "connections.a", "tpl,tpl.sub") + g.blank())
			}
			b.WriteString(g.pick("{", "\n{", "# x\n{") + g.comment() + "\n")
			g.body(depth-1, b, ind+"  ")
			b.WriteString(ind + "}" + g.comment() + "\n")
		}
	}
	if g.r.Intn(6) == 0 {
		b.WriteString(ind + "include" + g.pick(" ", "\t", "  ") + g.pick("inc.conf", "\"inc.conf\"", "i*.conf", "none*.conf") + g.comment() + "\n")
	}
}

var (
	randomCases = flag.Int("swanctl.random", 0, "compare this many random files with the real swanctl (TestSwanctlRandom)")
	randomSeed  = flag.Int64("swanctl.seed", 1, "seed for TestSwanctlRandom")
)

// TestSwanctlRandom generates swanctl.conf files, mostly valid, full of
// blanks, CRs, comments, quotes, escapes, references, includes and list
// values, sometimes broken by one stray character, and compares Swanctl
// with the real swanctl on each: both fail, or both send the same
// requests, or btnsd rejects a file on purpose (a documented deviation).
// It is slow (swanctl runs once per file): run it with
//
//	go test ./configs -run SwanctlRandom -swanctl.random 500 -swanctl.seed 7
func TestSwanctlRandom(t *testing.T) {
	if *randomCases == 0 {
		t.Skip("enable with -swanctl.random N")
	}
	r := rand.New(rand.NewSource(*randomSeed))
	g := gen{r}
	n := *randomCases
	agree, bothfail, dev := 0, 0, 0
	for i := 0; i < n; i++ {
		var b strings.Builder
		b.WriteString("tpl {\n")
		g.body(2, &b, "  ")
		b.WriteString(" sub { }\n}\nconnections {\n")
		for j := 0; j < 1+r.Intn(3); j++ {
			b.WriteString(" " + g.pick("a", "b", "c") + g.blank() + g.pick("{", ": tpl {", ":tpl.sub{") + "\n")
			g.body(3, &b, "  ")
			b.WriteString(" }\n")
		}
		b.WriteString("}\n")
		src := b.String()
		if r.Intn(5) == 0 {
			k := r.Intn(len(src))
			src = src[:k] + g.pick("}", "{", "\"", "\\", "#", "\r", ":", ".", "=", "\n") + src[k:]
		}
		var ib strings.Builder
		g.body(1, &ib, "")
		dir := writeFiles(t, map[string]string{"swanctl.conf": src, "inc.conf": ib.String(), "x509/c.pem": "C\n"})
		got, out := runSwanctl(t, filepath.Join(dir, "swanctl.conf"))
		swFail := strings.Contains(out, "invalid config file") || strings.Contains(out, "failed")
		msgs, err := oursFromDisk(dir, "swanctl.conf")
		switch {
		case swFail && err != nil:
			bothfail++

		case swFail:
			t.Errorf("swanctl fails, btnsd does not: %q\n%s", src, out)
		case err != nil:
			dev++
			for _, e := range Errors(err) {
				if !deviation(e) {
					t.Errorf("btnsd fails, swanctl does not: %q: %v\nswanctl said:\n%s", src, e, out)
				}
			}
		default:
			if len(got) != len(msgs) {
				t.Errorf("count %d vs %d: %q\n%s", len(got), len(msgs), src, out)
				continue
			}
			for k := range got {
				if !got[k].Equal(msgs[k].Msg()) {
					t.Errorf("differs: %q\nswanctl:\n%s\nours:\n%s", src, got[k].Format(), msgs[k].Msg().Format())
				}
			}
			agree++
		}
	}
	t.Logf("%d files: same requests %d, both fail %d, btnsd stricter %d", n, agree, bothfail, dev)
}

// deviation reports whether e is one of the documented cases where btnsd
// rejects what swanctl accepts.
func deviation(e error) bool {
	for _, s := range []string{
		"has the name of a key", "names no section", "reference loop",
		"longer than", "include loop", "larger than VICI's limit", "not found",
		"too complex",
	} {
		if strings.Contains(e.Error(), s) {
			return true
		}
	}
	return false
}
