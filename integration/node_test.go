package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btnsd/btnsd/api"
	"github.com/btnsd/btnsd/integration/lab"
	"github.com/btnsd/btnsd/vici"
)

// bins are the btnsd and btnsctl binaries built once for the test run.
var bins struct {
	dir, btnsd, btnsctl string
	err                 error
}

func TestMain(m *testing.M) {
	if os.Getenv("BTNSD_TEST_APP") != "" {
		runTestApp()
	}
	dir, err := os.MkdirTemp("", "btnsd-bin-")
	if err == nil {
		bins.dir = dir
		bins.btnsd = filepath.Join(dir, "btnsd")
		bins.btnsctl = filepath.Join(dir, "btnsctl")
		out, berr := exec.Command("go", "build", "-o", dir+"/", "../cmd/btnsd", "../cmd/btnsctl").CombinedOutput()
		if berr != nil {
			bins.err = fmt.Errorf("building btnsd and btnsctl: %v\n%s", berr, out)
		}
	} else {
		bins.err = err
	}
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// node is a lab host running charon and btnsd.
type node struct {
	*lab.Host
	t     testing.TB
	root  string // btnsd's --root: policy.d, pubkeys/fp, private/host.pem
	run   string // --run-dir: the API socket
	btnsd *lab.Proc
	api   *api.Client
	vc    *vici.Client
}

// newNode prepares btnsd's directories on h with the given policy files;
// call start to run it.
func newNode(t testing.TB, h *lab.Host, policies map[string]string) *node {
	t.Helper()
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	n := &node{Host: h, t: t, root: filepath.Join(h.Dir, "btnsd"), run: filepath.Join(h.Dir, "btnsd-run")}
	if err := os.MkdirAll(filepath.Join(n.root, "policy.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range policies {
		n.writePolicy(name, text)
	}
	n.api = api.NewClient(filepath.Join(n.run, "btnsd.sock"))
	n.vc = vici.New(h.VICISocket())
	t.Cleanup(func() { n.vc.Close() })
	return n
}

// startNode starts charon if needed, then btnsd, and waits until btnsd has
// synchronised with charon.
func startNode(t testing.TB, h *lab.Host, policies map[string]string) *node {
	t.Helper()
	n := newNode(t, h, policies)
	if !h.CharonRunning() {
		if err := h.StartCharon(); err != nil {
			t.Fatal(err)
		}
	}
	n.start()
	return n
}

func (n *node) start(extra ...string) {
	n.t.Helper()
	args := append([]string{"--root", n.root, "--vici", n.VICISocket(), "--run-dir", n.run,
		"--state-dir", filepath.Join(n.Dir, "btnsd-state")}, extra...)
	p, err := n.Start("btnsd.log", nil, bins.btnsd, args...)
	if err != nil {
		n.t.Fatal(err)
	}
	n.btnsd = p
	n.t.Cleanup(func() {
		if n.t.Failed() {
			n.t.Logf("--- btnsd log of %s\n%s", n.Name, p.Tail(60))
		}
	})
	n.waitSynced()
}

// waitSynced waits until btnsd answers and has synchronised with charon.
func (n *node) waitSynced() {
	n.t.Helper()
	n.eventually(10*time.Second, "btnsd synchronised with charon", func() bool {
		s, err := n.api.Status(context.Background())
		return err == nil && s.Charon.Connected && !s.LastSync.IsZero()
	})
}

func (n *node) status() *api.Status {
	n.t.Helper()
	s, err := n.api.Status(context.Background())
	if err != nil {
		n.t.Fatalf("%s: status: %v", n.Name, err)
	}
	return s
}

// ctl runs btnsctl on the node (in its namespace) and returns its output.
func (n *node) ctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return n.Run(ctx, bins.btnsctl, append([]string{"--root", n.root, "--socket", n.api.Socket()}, args...)...)
}

func (n *node) mustCtl(args ...string) string {
	n.t.Helper()
	out, err := n.ctl(args...)
	if err != nil {
		n.t.Fatalf("%s: btnsctl %s: %v", n.Name, strings.Join(args, " "), err)
	}
	return out
}

func (n *node) writePolicy(name, text string) {
	n.t.Helper()
	p := filepath.Join(n.root, "policy.d", name)
	tmp := filepath.Join(n.root, "policy.d", "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		n.t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		n.t.Fatal(err)
	}
}

// eventually polls cond every 10 ms until it holds, failing after d.
func (n *node) eventually(d time.Duration, what string, cond func() bool) time.Duration {
	n.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			n.t.Fatalf("%s: %s: not within %v", n.Name, what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// sas lists the node's IKE SAs.
func (n *node) sas() []vici.IKESA {
	n.t.Helper()
	sas, err := n.vc.ListSAs(context.Background(), vici.ListSAsFilter{})
	if err != nil {
		n.t.Fatalf("%s: list-sas: %v", n.Name, err)
	}
	return sas
}

// established returns the node's established IKE SAs with an installed
// child.
func (n *node) established() []vici.IKESA {
	var out []vici.IKESA
	for _, sa := range n.sas() {
		if sa.State != "ESTABLISHED" {
			continue
		}
		for _, c := range sa.Children {
			if c.State == "INSTALLED" {
				out = append(out, sa)
				break
			}
		}
	}
	return out
}

// trust makes n trust the host key of peer, through btnsctl on both ends,
// as two administrators would: peer exports its key, n adds it trusted.
func (n *node) trust(peer *node) {
	n.t.Helper()
	pub := peer.mustCtl("key", "host", "--format", "pem")
	f := filepath.Join(n.Dir, peer.Name+".pub")
	if err := os.WriteFile(f, []byte(pub), 0o644); err != nil {
		n.t.Fatal(err)
	}
	n.mustCtl("key", "add", f, "--name", peer.Name, "--trust")
}
