package latchmon

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/btnsd/btnsd/latchmon/latch"
	"github.com/btnsd/btnsd/latchmon/sockets"
	"github.com/btnsd/btnsd/vici/vicitest"
)

// benchMonitor is a monitor holding 100,000 latches over 10,000 child SAs
// (the latch package's performance target), and the dump that shows their
// sockets.
func benchMonitor(b *testing.B) (*Monitor, []sockets.Socket) {
	b.Helper()
	m, err := New(Config{SAs: vicitest.New(), Sockets: newFakeSockets()})
	if err != nil {
		b.Fatal(err)
	}
	m.SetConns(webConns(""))
	at := time.Now()
	const sas, perSA = 10_000, 10
	remote := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(1 + i>>16), byte(i >> 8), byte(i)}) }
	m.locked(at, func() {
		for i := range sas {
			ike := ikeSA(alice, uint64(i+1), remote(i).String(),
				childSA("web", uint64(i+1), "10.0.0.1/32", netip.PrefixFrom(remote(i), 32).String()))
			for _, ev := range []latch.Event{latch.IKEUp{At: at, IKE: m.ike(&ike)}, latch.ChildUp{At: at, Child: child(&ike, &ike.Children[0])}} {
				if err := m.mach.Step(ev); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	socks := make([]sockets.Socket, 0, sas*perSA)
	for i := range sas {
		for j := range perSA {
			s := tcpSock(uint64(len(socks)+1), fmt.Sprintf("10.0.0.1:%d", 40000+j), netip.AddrPortFrom(remote(i), 22).String())
			socks = append(socks, s)
		}
	}
	m.locked(at, func() {
		seen, _ := m.applyDump(socks)
		for _, f := range seen {
			m.stepLocked(latch.FlowSeen{At: at, Flow: f})
		}
	})
	if n := m.mach.Len(); n != sas*perSA {
		b.Fatalf("%d latches", n)
	}
	return m, socks
}

// BenchmarkPoll measures what one socket poll costs the monitor with
// 100,000 latched flows (the dump itself aside, see the sockets package):
// the diff by cookie that the monitor does, against stepping the whole dump
// as a Snapshot, and a poll that finds 100 sockets replaced.
func BenchmarkPoll(b *testing.B) {
	m, socks := benchMonitor(b)
	b.Run("unchanged/diff", func(b *testing.B) {
		for b.Loop() {
			at := time.Now()
			m.locked(at, func() {
				seen, gone := m.applyDump(socks)
				if len(seen)+len(gone) != 0 {
					b.Fatal("changes in an unchanged dump")
				}
			})
		}
	})
	b.Run("unchanged/snapshot", func(b *testing.B) {
		flows := make([]latch.Flow, len(socks))
		for i := range socks {
			flows[i] = flowOf(&socks[i])
		}
		for b.Loop() {
			at := time.Now()
			m.locked(at, func() { m.stepLocked(latch.Snapshot{At: at, Flows: true, Sockets: flows}) })
		}
	})
	b.Run("100 replaced/diff", func(b *testing.B) {
		next := uint64(len(socks) + 1)
		for b.Loop() {
			for i := range 100 {
				socks[i*997].Cookie = next
				next++
			}
			at := time.Now()
			m.locked(at, func() {
				seen, gone := m.applyDump(socks)
				for _, f := range gone {
					m.stepLocked(latch.FlowGone{At: at, Flow: f})
				}
				for _, f := range seen {
					m.stepLocked(latch.FlowSeen{At: at, Flow: f})
				}
			})
		}
		if n := m.mach.Len(); n != len(socks) {
			b.Fatalf("%d latches", n)
		}
	})
}
