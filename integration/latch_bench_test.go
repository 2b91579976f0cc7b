package integration

import (
	"context"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/btnsd/btnsd/api"
	"github.com/btnsd/btnsd/btnsauth"
)

var resetLine = regexp.MustCompile(`destroyed, (\S+) after the event`)

// BenchmarkBreakToReset runs the impostor scenario of
// TestLatchBrokenByImpostor b.N times (each on fresh hosts) and reports,
// as median and worst:
//
//   - event-to-reset: inside btnsd, from the VICI event of c's SA to the
//     socket destroyed (the monitor's own measure, from its log);
//
//   - initiate-to-break: from c starting its IKE exchange to a's BROKEN
//     alert (the exchange itself included);
//
//   - break-to-app: from the alert to the application on a seeing its
//     connection aborted (an upper bound: the test polls every 10 ms).
//
//     sudo go test -run '^$' -bench BreakToReset -benchtime 5x ./integration/
func BenchmarkBreakToReset(b *testing.B) {
	var toBreak, toReset, toApp []time.Duration
	for range b.N {
		s := newLatchSetup(b, []string{"a", "b", "c"}, "", "reset", false)
		c0 := s.l.Host("c")
		c := startNode(b, c0, map[string]string{"lan.conf": latchPolicy(s.l, s.aAddr, "", "reset")})
		s.a.trust(c)
		c.trust(s.a)
		c.waitConnLoaded(btnsauth.ConnName("lan", s.a.hostFP()))
		s.a.waitConnLoaded(btnsauth.ConnName("lan", c.hostFP()))
		latched, _ := s.a.waitLatch(3*time.Second, "a's latch ESTABLISHED", state("ESTABLISHED", flowFrom(s.bAddr)))
		alerts := followAlerts(b, s.a)
		if err := c0.TakeAddress(context.Background(), s.l.Host("b")); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := c.initiate("lan", s.a); err != nil {
			b.Fatal(err)
		}
		a := alerts.wait(b, 2*time.Second, func(a api.Alert) bool { return a.Latch == uint64(latched.ID) && a.To == "BROKEN" })
		s.server.waitLine(2*time.Second, "error")
		seen := time.Now()
		toBreak = append(toBreak, a.At.Sub(start))
		toApp = append(toApp, seen.Sub(a.At))
		var m []string
		s.a.eventually(2*time.Second, "btnsd's reset log line", func() bool {
			m = resetLine.FindStringSubmatch(s.a.btnsd.Tail(50))
			return m != nil
		})
		d, err := time.ParseDuration(m[1])
		if err != nil {
			b.Fatalf("reset log line: %v", err)
		}
		toReset = append(toReset, d)
	}
	report := func(name string, d []time.Duration) {
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, name+"-median-ms")
		b.ReportMetric(float64(d[len(d)-1].Microseconds())/1000, name+"-worst-ms")
	}
	report("event-to-reset", toReset)
	report("initiate-to-break", toBreak)
	report("break-to-app", toApp)
}
