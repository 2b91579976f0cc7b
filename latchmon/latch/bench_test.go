package latch

import (
	"fmt"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// The performance target: 100,000 latches over 10,000 child SAs (ten flows
// per SA, one remote host per SA), at least 100,000 SA events per second on
// one core, and less than 1 KiB per latch.
const (
	benchSAs     = 10_000
	benchLatches = 100_000
)

type benchWorld struct {
	m        *Machine
	now      time.Time
	ikes     []uint64 // IKE SA of SA slot i
	children []uint64 // child SA of SA slot i
	next     uint64
}

func benchRemote(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(1 + i>>16), byte(i >> 8), byte(i)})
}

func benchChild(ike, id uint64, i int) Child {
	return Child{IKEID: ike, ID: id, Protection: prot("web", "ssh"),
		LocalTS:  []Selector{{Prefix: netip.MustParsePrefix("10.0.0.1/32")}},
		RemoteTS: []Selector{{Prefix: netip.PrefixFrom(benchRemote(i), 32)}}}
}

// newBenchWorld sets up the SAs; withFlows adds the latched flows.
func newBenchWorld(tb testing.TB, withFlows bool) *benchWorld {
	w := &benchWorld{m: New(), now: t0, ikes: make([]uint64, benchSAs), children: make([]uint64, benchSAs)}
	w.step(tb, PolicyChanged{Policy: Policy{Conn: "web", Child: "ssh", Latch: true}})
	for i := range benchSAs {
		w.next++
		w.ikes[i] = w.next
		w.step(tb, IKEUp{IKE: keyIKE(w.next, fmt.Sprintf("SHA256:key%d", i))})
		w.next++
		w.children[i] = w.next
		w.step(tb, ChildUp{Child: benchChild(w.ikes[i], w.next, i)})
	}
	if withFlows {
		w.addFlows(tb)
	}
	w.m.Ready()
	return w
}

func (w *benchWorld) addFlows(tb testing.TB) {
	local := netip.MustParseAddr("10.0.0.1")
	per := benchLatches / benchSAs
	for i := range benchSAs {
		for j := range per {
			w.next++
			t := Tuple{ProtoTCP, netip.AddrPortFrom(local, uint16(40000+j)), netip.AddrPortFrom(benchRemote(i), 22)}
			w.step(tb, FlowSeen{Flow: Flow{Tuple: t, Cookie: w.next}})
		}
		if i%1000 == 0 {
			w.m.Ready()
		}
	}
	if w.m.Len() != benchLatches {
		tb.Fatalf("%d latches, want %d", w.m.Len(), benchLatches)
	}
}

func (w *benchWorld) step(tb testing.TB, ev Event) {
	w.now = w.now.Add(time.Millisecond)
	if err := w.m.Step(withTime(ev, w.now)); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkSAEvents measures SA events per second against 100,000 latches
// and 10,000 SAs, the actions drained after each event as the driver does.
//
//   - child-rekey: a child SA rekeyed with equal parameters (the common
//     event; RFC 5660 2: nothing changes);
//   - ike-rekey: an IKE SA rekeyed;
//   - break-mend: an attacker's child SA comes over a host's ten latched
//     flows and goes again (notify disposition), ten Alerts each way;
//   - mixed: 80% child rekeys, 10% IKE rekeys, 10% break-mend.
func BenchmarkSAEvents(b *testing.B) {
	for _, kind := range []string{"child-rekey", "ike-rekey", "break-mend", "mixed"} {
		b.Run(kind, func(b *testing.B) {
			w := newBenchWorld(b, true)
			w.step(b, PolicyChanged{Policy: Policy{Conn: "web", Child: "ssh", Latch: true, OnBreak: DispositionNotify}})
			w.next++
			attacker := w.next
			w.step(b, IKEUp{IKE: keyIKE(attacker, fpMallory)})
			w.m.Ready()
			var alerts int
			var conflicting uint64 // the attacker's child SA, while up
			b.ReportAllocs()
			b.ResetTimer()
			start, cpuStart := time.Now(), cpuTime()
			for n := 0; n < b.N; n++ {
				i := n % benchSAs
				k := kind
				if k == "mixed" {
					k = [10]string{"child-rekey", "child-rekey", "ike-rekey", "child-rekey", "child-rekey",
						"break-mend", "child-rekey", "child-rekey", "child-rekey", "child-rekey"}[n%10]
				}
				w.next++
				var ev Event
				switch k {
				case "child-rekey":
					ev = ChildRekeyed{Old: w.children[i], New: benchChild(0, w.next, i)}
					w.children[i] = w.next
				case "ike-rekey":
					ev = IKERekeyed{Old: w.ikes[i], New: keyIKE(w.next, "")}
					w.ikes[i] = w.next
				case "break-mend":
					if conflicting == 0 {
						ev = ChildUp{Child: benchChild(attacker, w.next, i)}
						conflicting = w.next
					} else {
						ev = ChildDown{ID: conflicting, Reason: "deleted"}
						conflicting = 0
					}
				}
				w.now = w.now.Add(time.Microsecond)
				if err := w.m.Step(withTime(ev, w.now)); err != nil {
					b.Fatal(err)
				}
				alerts += len(w.m.Ready())
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			// The CPU time of the process, which the other processes on a
			// shared machine do not inflate as they do the wall time.
			b.ReportMetric(float64(b.N)/(cpuTime()-cpuStart).Seconds(), "events/cpu-s")
			if kind == "break-mend" && b.N > 1 && alerts == 0 {
				b.Fatal("break-mend raised no alert")
			}
		})
	}
}

// BenchmarkMemoryPerLatch measures the heap the latches of 100,000 flows
// take, over that of the 10,000 SAs they are latched to (all indexes
// included).
func BenchmarkMemoryPerLatch(b *testing.B) {
	var perLatch, perSA float64
	for n := 0; n < b.N; n++ {
		base := heapAlloc()
		w := newBenchWorld(b, false)
		withSAs := heapAlloc()
		w.addFlows(b)
		w.m.Ready()
		withLatches := heapAlloc()
		perSA = float64(withSAs-base) / benchSAs
		perLatch = float64(withLatches-withSAs) / benchLatches
		runtime.KeepAlive(w)
	}
	b.ReportMetric(perLatch, "bytes/latch")
	b.ReportMetric(perSA, "bytes/SA")
	if perLatch >= 1024 {
		b.Errorf("%.0f bytes per latch, the target is under 1 KiB", perLatch)
	}
}

// cpuTime returns the user and system CPU time of the process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestBenchWorld keeps the benchmark setup honest at a small scale: the
// latches are bound where the benchmark expects them.
func TestBenchWorld(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 100,000 latches")
	}
	w := newBenchWorld(t, true)
	li, err := w.m.Inquire(1)
	if err != nil || li.State != Established || len(li.SAs) != 1 {
		t.Fatalf("latch 1: %+v, %v", li, err)
	}
}
