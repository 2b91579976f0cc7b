package daemon

import (
	"net/netip"
	"strconv"
	"testing"

	"github.com/btnsd/btnsd/btnsauth"
	"github.com/btnsd/btnsd/vici"
	"github.com/google/go-cmp/cmp"
)

func TestOverLimits(t *testing.T) {
	want := map[string]desiredConn{
		"btns.p.k1":   {Conn: btnsauth.Conn{Name: "btns.p.k1", Policy: "p"}, limits: limits{maxSAs: 3, maxPerAddr: 1}},
		"btns.p.k2":   {Conn: btnsauth.Conn{Name: "btns.p.k2", Policy: "p"}, limits: limits{maxSAs: 3, maxPerAddr: 1}},
		"btns.p.anon": {Conn: btnsauth.Conn{Name: "btns.p.anon", Policy: "p"}, limits: limits{maxSAs: 3, maxPerAddr: 1}},
		"btns.q.k1":   {Conn: btnsauth.Conn{Name: "btns.q.k1", Policy: "q"}},
	}
	addr := netip.MustParseAddr
	sa := func(id uint64, name, remote, state string) vici.IKESA {
		return vici.IKESA{UniqueID: id, Name: name, RemoteHost: addr(remote), State: state}
	}
	sas := []vici.IKESA{
		sa(5, "btns.p.k1", "10.0.0.1", "ESTABLISHED"), // second from 10.0.0.1: over per-address
		sa(2, "btns.p.k2", "10.0.0.1", "ESTABLISHED"), // oldest from 10.0.0.1: kept
		sa(3, "btns.p.anon", "10.0.0.2", "ESTABLISHED"),
		sa(4, "btns.p.k1", "10.0.0.3", "CONNECTING"),
		sa(6, "btns.p.k2", "10.0.0.4", "ESTABLISHED"), // fourth in all: over max_sas
		sa(7, "btns.p.k2", "10.0.0.5", "DELETING"),    // going anyway: not counted
		sa(8, "btns.q.k1", "10.0.0.1", "ESTABLISHED"), // no limits
		sa(9, "foreign", "10.0.0.1", "ESTABLISHED"),   // not btnsd's
	}
	var got []string
	for _, x := range overLimits(sas, want) {
		got = append(got, x.sa.Name+"#"+strconv.FormatUint(x.sa.UniqueID, 10)+": "+x.reason)
	}
	wantOut := []string{
		"btns.p.k1#5: policy p allows at most 1 IKE SA(s) per remote address",
		"btns.p.k2#6: policy p allows at most 3 IKE SA(s) in all",
	}
	if diff := cmp.Diff(wantOut, got); diff != "" {
		t.Errorf("overLimits (-want +got):\n%s", diff)
	}
}
