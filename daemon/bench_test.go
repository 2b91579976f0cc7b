package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btnsd/btnsd/btnsauth"
	"github.com/btnsd/btnsd/fingerprints"
	"github.com/btnsd/btnsd/integration/lab"
	"github.com/btnsd/btnsd/vici"
)

const benchKeys = 1000

const benchPolicy = `connections {
  lan {
    btns { enabled = yes }
    children { host { esp_proposals = aes128gcm16 } }
  }
}
`

// benchStore makes a key store of n trusted Ed25519 keys under root, and
// the host key.
func benchStore(b *testing.B, root string, n int) (*fingerprints.Store, []fingerprints.Entry) {
	b.Helper()
	store, err := fingerprints.Open(root)
	if err != nil {
		b.Fatal(err)
	}
	entries := make([]fingerprints.Entry, n)
	for i := range entries {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		k, err := fingerprints.NewPublicKey(pub)
		if err != nil {
			b.Fatal(err)
		}
		entries[i] = fingerprints.Entry{Key: k, Meta: fingerprints.Meta{Name: fmt.Sprintf("k%d", i), Trust: fingerprints.Trusted}}
	}
	if entries, err = store.AddMany(entries); err != nil {
		b.Fatal(err)
	}
	return store, entries
}

// BenchmarkFullSync: one BTNS policy and 1000 trusted keys synced into an
// idle charon by btnsd, against swanctl --load-conns of the equivalent
// swanctl.conf, each into a freshly started charon, in the same run.
// Target: btnsd/swanctl <= 1.1.
//
//	sudo go test -run '^$' -bench FullSync -benchtime 3x ./daemon/
func BenchmarkFullSync(b *testing.B) {
	l := lab.Start(b, lab.Options{Hosts: []string{"a"}})
	a := l.Host("a")
	root := filepath.Join(a.Dir, "btnsd")
	os.MkdirAll(filepath.Join(root, "policy.d"), 0o755)
	os.WriteFile(filepath.Join(root, "policy.d", "lan.conf"), []byte(benchPolicy), 0o644)
	store, entries := benchStore(b, root, benchKeys)
	signer, pub, err := fingerprints.LoadOrCreateHostKey(fingerprints.HostKeyPath(root))
	if err != nil {
		b.Fatal(err)
	}

	// The equivalent swanctl.conf: the same connections, keys as files.
	sw := filepath.Join(a.Dir, "swanctl")
	for _, d := range []string{"pubkey", "private", "x509", "x509ca"} {
		os.MkdirAll(filepath.Join(sw, d), 0o755)
	}
	os.WriteFile(filepath.Join(sw, "pubkey", "host.pem"), pub.PEM(), 0o644)
	var conf strings.Builder
	conf.WriteString("connections {\n")
	for _, e := range entries {
		fp := e.Key.Fingerprint.Hex()
		os.WriteFile(filepath.Join(sw, "pubkey", fp+".pem"), e.Key.PEM(), 0o644)
		fmt.Fprintf(&conf, "  %s {\n    remote_addrs = %%any\n    local {\n      auth = pubkey\n      pubkeys = host.pem\n    }\n    remote {\n      auth = pubkey\n      pubkeys = %s.pem\n      id = \"%s\"\n    }\n    children {\n      host {\n        esp_proposals = aes128gcm16\n      }\n    }\n  }\n",
			// swanctl.conf section names cannot hold btnsd's dots.
			strings.ReplaceAll(btnsauth.ConnName("lan", fp), ".", "-"), fp, e.Key.KeyID.Swanctl())
	}
	conf.WriteString("}\n")
	os.WriteFile(filepath.Join(sw, "swanctl.conf"), []byte(conf.String()), 0o644)

	ctx := context.Background()
	restart := func() {
		a.StopCharon()
		if err := a.StartCharon(); err != nil {
			b.Fatal(err)
		}
	}
	var tBtnsd, tSwanctl time.Duration
	for range b.N {
		restart()
		c := vici.New(a.VICISocket())
		if _, err := c.GetConns(ctx); err != nil { // connect outside the timing
			b.Fatal(err)
		}
		d := newDaemon(Config{Root: root, RunDir: filepath.Join(a.Dir, "run-btnsd")}, c, store, signer, pub)
		d.connected = true
		start := time.Now()
		d.loadPolicies()
		d.apply(ctx)
		tBtnsd += time.Since(start)
		names, err := c.GetConns(ctx)
		if err != nil || len(names) != benchKeys || len(d.errs) > 0 {
			b.Fatalf("btnsd: charon has %d connections (%v), errors %v", len(names), err, d.errs)
		}
		c.Close()

		restart()
		start = time.Now()
		out, err := a.Run(ctx, "env", "SWANCTL_DIR="+sw, "swanctl", "--load-conns", "--uri", "unix://"+a.VICISocket())
		tSwanctl += time.Since(start)
		if err != nil || !strings.Contains(out, fmt.Sprintf("successfully loaded %d connections", benchKeys)) {
			b.Fatalf("swanctl: %v\n%s", err, out[max(0, len(out)-300):])
		}
	}
	n := float64(b.N)
	b.ReportMetric(tBtnsd.Seconds()*1000/n, "btnsd-ms")
	b.ReportMetric(tSwanctl.Seconds()*1000/n, "swanctl-ms")
	b.ReportMetric(tBtnsd.Seconds()/tSwanctl.Seconds(), "btnsd/swanctl")
}

// BenchmarkAddKey: a store of 1000 trusted keys synced into charon by a
// running btnsd; then one key added as btnsctl would (another process's
// write): the VICI calls it causes (target: 1 load-conn) and the time from
// the write to charon listing the new connection (target: median under
// 100 ms).
//
//	sudo go test -run '^$' -bench AddKey -benchtime 20x ./daemon/
func BenchmarkAddKey(b *testing.B) {
	l := lab.Start(b, lab.Options{Hosts: []string{"a"}})
	a := l.Host("a")
	lab.StartCharons(b, l)
	root := filepath.Join(a.Dir, "btnsd")
	os.MkdirAll(filepath.Join(root, "policy.d"), 0o755)
	os.WriteFile(filepath.Join(root, "policy.d", "lan.conf"), []byte(benchPolicy), 0o644)
	store, _ := benchStore(b, root, benchKeys)
	signer, pub, err := fingerprints.LoadOrCreateHostKey(fingerprints.HostKeyPath(root))
	if err != nil {
		b.Fatal(err)
	}
	c := vici.New(a.VICISocket())
	defer c.Close()
	probe := vici.New(a.VICISocket())
	defer probe.Close()
	d := newDaemon(Config{Root: root, RunDir: filepath.Join(a.Dir, "run-btnsd")}, c, store, signer, pub)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.run(ctx) }()
	defer func() { cancel(); <-done }()
	ctx0 := context.Background()
	for {
		if names, _ := probe.GetConns(ctx0); len(names) == benchKeys {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cli, err := fingerprints.Open(root) // btnsctl's view: another Store
	if err != nil {
		b.Fatal(err)
	}

	var lat []time.Duration
	var calls uint64
	b.ResetTimer()
	for i := range b.N {
		pubk, _, _ := ed25519.GenerateKey(rand.Reader)
		k, _ := fingerprints.NewPublicKey(pubk)
		name := btnsauth.ConnName("lan", k.Fingerprint.Hex())
		before := d.status.Load().VICICalls["load-conn"]
		start := time.Now()
		if _, err := cli.Add(k, fingerprints.Meta{Trust: fingerprints.Trusted}); err != nil {
			b.Fatal(err)
		}
		for {
			conns, err := probe.GetConns(ctx0)
			if err != nil {
				b.Fatal(err)
			}
			if slices.Contains(conns, name) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(start))
		// The status is published after the sync that loaded it.
		for d.status.Load().VICICalls["load-conn"] == before {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(30 * time.Millisecond) // any further, wrong, call
		calls += d.status.Load().VICICalls["load-conn"] - before
		_ = i
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "worst-ms")
	b.ReportMetric(float64(calls)/float64(b.N), "load-conn/key")
}
