package daemon

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/btnsd/btnsd/vici"
)

// excess is an IKE SA over a policy's limits.
type excess struct {
	sa     vici.IKESA
	reason string
}

// overLimits returns the IKE SAs that exceed the limits of their policy
// (RFC 5387 asks for resource limits on BTNS SAs; charon only has global
// ones). The oldest SAs (lowest unique id) are kept, the newest are over:
// an established peer is never pushed out by a newcomer.
func overLimits(sas []vici.IKESA, want map[string]desiredConn) []excess {
	type group struct {
		lim limits
		sas []vici.IKESA
	}
	byPolicy := map[string]*group{}
	for _, sa := range sas {
		c, ok := want[sa.Name]
		if !ok || (c.limits == limits{}) {
			continue
		}
		if sa.State == "DELETING" || sa.State == "DESTROYING" {
			continue
		}
		g := byPolicy[c.Policy]
		if g == nil {
			g = &group{lim: c.limits}
			byPolicy[c.Policy] = g
		}
		g.sas = append(g.sas, sa)
	}
	policies := make([]string, 0, len(byPolicy))
	for p := range byPolicy {
		policies = append(policies, p)
	}
	slices.Sort(policies)

	var out []excess
	for _, p := range policies {
		g := byPolicy[p]
		slices.SortFunc(g.sas, func(a, b vici.IKESA) int { return cmp.Compare(a.UniqueID, b.UniqueID) })
		over := map[uint64]bool{}
		if g.lim.maxPerAddr > 0 {
			perAddr := map[netip.Addr]int{}
			for _, sa := range g.sas {
				perAddr[sa.RemoteHost]++
				if perAddr[sa.RemoteHost] > g.lim.maxPerAddr {
					over[sa.UniqueID] = true
					out = append(out, excess{sa, fmt.Sprintf("policy %s allows at most %d IKE SA(s) per remote address", p, g.lim.maxPerAddr)})
				}
			}
		}
		if g.lim.maxSAs > 0 {
			n := 0
			for _, sa := range g.sas {
				if over[sa.UniqueID] {
					continue
				}
				if n++; n > g.lim.maxSAs {
					out = append(out, excess{sa, fmt.Sprintf("policy %s allows at most %d IKE SA(s) in all", p, g.lim.maxSAs)})
				}
			}
		}
	}
	return out
}
