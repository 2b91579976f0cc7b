package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btnsd/btnsd/configs"
	"github.com/btnsd/btnsd/integration/lab"
	"github.com/btnsd/btnsd/vici"
)

// TestSwanctlAndConfigsLoadTheSame loads realistic swanctl.conf files into
// one charon with swanctl --load-conns and into another with the messages
// package configs builds, and compares what the two charons then list: a
// connection without btnsd's keys must reach charon exactly as swanctl
// sends it.
func TestSwanctlAndConfigsLoadTheSame(t *testing.T) {
	l := lab.Start(t, lab.Options{Hosts: []string{"swanctl", "btnsd"}})
	lab.StartCharons(t, l)
	viaSwanctl, viaConfigs := l.Host("swanctl"), l.Host("btnsd")
	ctx := context.Background()
	cs := vici.New(viaSwanctl.VICISocket())
	defer cs.Close()
	cb := vici.New(viaConfigs.VICISocket())
	defer cb.Close()

	for _, name := range []string{"roadwarrior", "site-to-site"} {
		t.Run(name, func(t *testing.T) {
			file, err := filepath.Abs(filepath.Join("..", "configs", "testdata", "golden", name, "swanctl.conf"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(file); err != nil {
				t.Fatal(err)
			}
			if out, err := viaSwanctl.Swanctl(ctx, "--load-conns", "--file", file); err != nil {
				t.Fatalf("swanctl --load-conns: %v\n%s", err, out)
			}
			msgs, err := configs.SwanctlFile(os.DirFS("/"), strings.TrimPrefix(file, "/"), configs.Dirs{})
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) == 0 {
				t.Fatal("no connections in the file")
			}
			for _, m := range msgs {
				if err := cb.LoadConn(ctx, m.Name, m.Body); err != nil {
					t.Fatalf("load-conn %s: %v", m.Name, err)
				}
			}
			want, err := cs.ListConns(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got, err := cb.ListConns(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) || len(want) != len(msgs) {
				t.Fatalf("swanctl loaded %d connections, configs %d (file has %d)", len(want), len(got), len(msgs))
			}
			for i := range want {
				if want[i].Name != got[i].Name || !want[i].Body.Equal(got[i].Body) {
					t.Errorf("connection %s differs:\nswanctl:\n%s\nconfigs:\n%s", want[i].Name, want[i].Body.Format(), got[i].Body.Format())
				}
			}
			// swanctl --load-conns --file replaces what charon has: clear
			// the configs side the same way for the next file.
			for _, c := range got {
				cb.UnloadConn(ctx, c.Name)
			}
		})
	}
}
