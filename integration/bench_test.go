package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btnsd/btnsd/integration/lab"
	"github.com/btnsd/btnsd/vici"
)

const benchConns = 1000

// benchConn is connection i of the load benchmark, as a load-conn body.
func benchConn(i int) *vici.Msg {
	c := vici.NewMsg()
	c.Set("remote_addrs", []string{fmt.Sprintf("10.%d.%d.1", 100+i/250, i%250)})
	lo := vici.NewMsg()
	lo.Set("auth", "psk")
	c.Set("local", lo)
	re := vici.NewMsg()
	re.Set("auth", "psk")
	c.Set("remote", re)
	ch := vici.NewMsg()
	ch.Set("esp_proposals", []string{"aes128gcm16"})
	children := vici.NewMsg()
	children.Set(fmt.Sprintf("c%d", i), ch)
	c.Set("children", children)
	return c
}

// benchSwanctlConf is the same 1000 connections as a swanctl.conf.
func benchSwanctlConf() string {
	var b strings.Builder
	b.WriteString("connections {\n")
	for i := range benchConns {
		fmt.Fprintf(&b, "  c%d {\n    remote_addrs = 10.%d.%d.1\n    local {\n      auth = psk\n    }\n    remote {\n      auth = psk\n    }\n    children {\n      c%d {\n        esp_proposals = aes128gcm16\n      }\n    }\n  }\n", i, 100+i/250, i%250, i)
	}
	b.WriteString("}\n")
	return b.String()
}

// BenchmarkLoadConns loads 1000 connections into an idle charon through
// package vici and through swanctl --load-conns, each into a freshly started
// charon, in the same run, and reports both times and their ratio. The
// target is vici/ adding no overhead of its own: vici/swanctl <= 1.05.
//
//	sudo go test -run '^$' -bench LoadConns -benchtime 5x ./integration/
func BenchmarkLoadConns(b *testing.B) {
	l := lab.Start(b, lab.Options{Hosts: []string{"a"}})
	a := l.Host("a")
	swDir := filepath.Join(a.Dir, "swanctl")
	for _, d := range []string{"", "conf.d", "x509", "x509ca", "pubkey", "private", "rsa", "ecdsa", "pkcs8"} {
		if err := os.MkdirAll(filepath.Join(swDir, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(swDir, "swanctl.conf"), []byte(benchSwanctlConf()), 0o644); err != nil {
		b.Fatal(err)
	}
	bodies := make([]*vici.Msg, benchConns)
	for i := range bodies {
		bodies[i] = benchConn(i)
	}
	ctx := context.Background()
	restart := func() {
		a.StopCharon()
		if err := a.StartCharon(); err != nil {
			b.Fatal(err)
		}
	}

	var tVICI, tSwanctl time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		restart()
		c := vici.New(a.VICISocket())
		if _, err := c.Version(ctx); err != nil { // connect outside the timing
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		for i, body := range bodies {
			if err := c.LoadConn(ctx, fmt.Sprintf("c%d", i), body); err != nil {
				b.Fatal(err)
			}
		}
		tVICI += time.Since(start)
		b.StopTimer()
		names, err := c.GetConns(ctx)
		if err != nil || len(names) != benchConns {
			b.Fatalf("vici: charon has %d connections (%v), want %d", len(names), err, benchConns)
		}
		c.Close()

		restart()
		start = time.Now()
		out, err := a.Run(ctx, "env", "SWANCTL_DIR="+swDir, "swanctl", "--load-conns", "--uri", "unix://"+a.VICISocket())
		tSwanctl += time.Since(start)
		if err != nil || !strings.Contains(out, fmt.Sprintf("successfully loaded %d connections", benchConns)) {
			b.Fatalf("swanctl --load-conns: %v\n%s", err, lastLines(out, 3))
		}
		b.StartTimer()
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(tVICI.Seconds()*1000/n, "vici-ms")
	b.ReportMetric(tSwanctl.Seconds()*1000/n, "swanctl-ms")
	b.ReportMetric(tVICI.Seconds()/tSwanctl.Seconds(), "vici/swanctl")
	b.Logf("%d connections into an idle charon: vici %v, swanctl --load-conns %v (mean of %d), ratio %.3f",
		benchConns, tVICI/time.Duration(b.N), tSwanctl/time.Duration(b.N), b.N, tVICI.Seconds()/tSwanctl.Seconds())
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
