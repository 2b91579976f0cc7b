package daemon

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/btnsd/btnsd/api"
	"github.com/btnsd/btnsd/fingerprints"
	"github.com/btnsd/btnsd/latchmon"
	"github.com/btnsd/btnsd/latchmon/latch"
)

// connInfos tells the latch monitor which connections btnsd owns, whose key
// each pins, and how each child latches.
func (d *daemon) connInfos() []latchmon.ConnInfo {
	out := make([]latchmon.ConnInfo, 0, len(d.pad.want))
	for _, c := range d.pad.want {
		ci := latchmon.ConnInfo{Name: c.Name, Policy: c.Policy, PeerFP: c.Peer, Anonymous: c.Anonymous}
		if pc := d.pol.current.Conn(c.Policy); pc != nil {
			for _, ch := range pc.Policy.Children {
				ci.Children = append(ci.Children, latchmon.ChildInfo{Name: ch.Name, Latch: ch.Latch, OnBreak: string(ch.OnBreak)})
			}
		}
		out = append(out, ci)
	}
	return out
}

func (d *daemon) latchRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/latches", d.needMonitor(func(w http.ResponseWriter, r *http.Request) {
		infos := d.mon.Latches()
		out := make([]api.Latch, 0, len(infos))
		for _, li := range infos {
			out = append(out, d.apiLatch(li, false))
		}
		writeJSON(w, http.StatusOK, out)
	}))
	mux.HandleFunc("GET /v1/latches/find", d.needMonitor(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		t, err := parseTuple(q.Get("proto"), q.Get("local"), q.Get("remote"), true)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		id, ok := d.mon.Find(t)
		if !ok {
			writeError(w, http.StatusNotFound, "no latch for "+t.String())
			return
		}
		d.writeLatch(w, http.StatusOK, id)
	}))
	mux.HandleFunc("GET /v1/latches/{id}", d.needMonitor(func(w http.ResponseWriter, r *http.Request) {
		id, ok := latchID(w, r)
		if ok {
			d.writeLatch(w, http.StatusOK, id)
		}
	}))
	mux.HandleFunc("GET /v1/latches/{id}/channel-binding", d.needMonitor(func(w http.ResponseWriter, r *http.Request) {
		id, ok := latchID(w, r)
		if !ok {
			return
		}
		li, err := d.mon.Inquire(id)
		if err != nil {
			writeError(w, latchStatus(err), err.Error())
			return
		}
		cb, err := d.channelBinding(li)
		if err != nil {
			writeError(w, http.StatusConflict, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, cb)
	}))
	mux.HandleFunc("POST /v1/latches", d.change(d.needMonitor(func(w http.ResponseWriter, r *http.Request) {
		var req api.CreateLatch
		if !decode(w, r, &req) {
			return
		}
		t, err := parseTuple(req.Proto, req.Local, req.Remote, true)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		var want latch.Want
		switch req.OnBreak {
		case "":
		case "reset":
			want.OnBreak = latch.DispositionReset
		case "notify":
			want.OnBreak = latch.DispositionNotify
		default:
			writeError(w, http.StatusBadRequest, fmt.Sprintf("on_break %q: want reset or notify", req.OnBreak))
			return
		}
		if req.Peer != "" {
			fp, err := fingerprints.ParseFingerprint(req.Peer)
			if err != nil {
				writeError(w, http.StatusBadRequest, "peer: "+err.Error())
				return
			}
			want.Peer = &latch.Peer{Kind: latch.KeyPeer, Fingerprint: fp.String()}
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		var id latch.LatchID
		if t.Remote.IsValid() {
			id, err = d.mon.CreateConnection(ctx, t, 0, want)
		} else {
			id, err = d.mon.CreateListener(ctx, latch.Endpoint{Proto: t.Proto, Local: t.Local}, 0, want)
		}
		if err != nil {
			writeError(w, latchStatus(err), err.Error())
			return
		}
		d.writeLatch(w, http.StatusCreated, id)
	})))
	mux.HandleFunc("DELETE /v1/latches/{id}", d.change(d.needMonitor(func(w http.ResponseWriter, r *http.Request) {
		id, ok := latchID(w, r)
		if !ok {
			return
		}
		if err := d.mon.Release(id); err != nil {
			writeError(w, latchStatus(err), err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})))
	mux.HandleFunc("POST /v1/latches/{id}/close", d.change(d.needMonitor(func(w http.ResponseWriter, r *http.Request) {
		id, ok := latchID(w, r)
		if !ok {
			return
		}
		req := api.CloseLatch{Reason: "closed by an administrator"}
		if r.ContentLength != 0 && !decode(w, r, &req) {
			return
		}
		if err := d.mon.AdminClose(id, req.Reason); err != nil {
			writeError(w, latchStatus(err), err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})))
	mux.HandleFunc("GET /v1/alerts", d.needMonitor(d.serveAlerts))
}

// serveAlerts streams alerts, one JSON object a line, until the client goes
// away. A client that does not read within 5 s is dropped, and the monitor
// itself drops a subscriber that falls too far behind: a slow client never
// blocks btnsd.
func (d *daemon) serveAlerts(w http.ResponseWriter, r *http.Request) {
	alerts, cancel := d.mon.Subscribe()
	defer cancel()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case a, ok := <-alerts:
			if !ok {
				return // dropped for falling behind
			}
			rc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if enc.Encode(apiAlert(a)) != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

func (d *daemon) needMonitor(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if d.mon == nil {
			writeError(w, http.StatusServiceUnavailable, "connection latching is not running")
			return
		}
		h(w, r)
	}
}

func latchID(w http.ResponseWriter, r *http.Request) (latch.LatchID, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("latch id %q: want a positive number", r.PathValue("id")))
		return 0, false
	}
	return latch.LatchID(id), true
}

func latchStatus(err error) int {
	switch {
	case errors.Is(err, latch.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, latch.ErrExists), errors.Is(err, latch.ErrConflict), errors.Is(err, latch.ErrNoSA):
		return http.StatusConflict
	case errors.Is(err, latch.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, latch.ErrNeedSnapshot):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// parseTuple reads a flow from API parameters: proto "tcp" or "udp" (or a
// number), local and remote as address:port. remote may be empty when
// listener is true.
func parseTuple(proto, local, remote string, listener bool) (latch.Tuple, error) {
	var t latch.Tuple
	switch strings.ToLower(proto) {
	case "tcp", "6":
		t.Proto = 6
	case "udp", "17":
		t.Proto = 17
	default:
		return t, fmt.Errorf("proto %q: want tcp or udp", proto)
	}
	var err error
	if t.Local, err = netip.ParseAddrPort(local); err != nil {
		return t, fmt.Errorf("local %q: want address:port ([v6]:port for IPv6)", local)
	}
	if remote == "" {
		if !listener {
			return t, errors.New("remote: missing")
		}
		return t, nil
	}
	if t.Remote, err = netip.ParseAddrPort(remote); err != nil {
		return t, fmt.Errorf("remote %q: want address:port ([v6]:port for IPv6)", remote)
	}
	return t, nil
}

func (d *daemon) writeLatch(w http.ResponseWriter, code int, id latch.LatchID) {
	li, err := d.mon.Inquire(id)
	if err != nil {
		writeError(w, latchStatus(err), err.Error())
		return
	}
	writeJSON(w, code, d.apiLatch(li, true))
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	}
	return strconv.Itoa(int(p))
}

// apiLatch converts a latch for the API; withKey adds the peer's public key
// from the key store (INQUIRE_LATCH: every latched parameter).
func (d *daemon) apiLatch(li latch.LatchInfo, withKey bool) api.Latch {
	l := api.Latch{
		ID: uint64(li.ID), State: li.State.String(), Proto: protoName(li.Tuple.Proto), Local: li.Tuple.Local.String(),
		Cookie: li.Cookie, Origin: li.Origin.String(), Listener: uint64(li.Listener), Disposition: li.Disposition.String(),
		Peer: api.Peer{Fingerprint: li.Peer.Fingerprint, Lineage: li.Peer.Lineage, ID: li.PeerID},
		Protection: api.Protection{
			Conn: li.Protection.Conn, Child: li.Protection.Child, Protocol: li.Protection.Protocol, Mode: li.Protection.Mode,
			Encap: li.Protection.Encap, Encr: li.Protection.Encr, EncrKeySize: li.Protection.EncrKeySize,
			Integ: li.Protection.Integ, IntegKeySize: li.Protection.IntegKeySize, DHGroup: li.Protection.DHGroup,
			LocalID: li.Protection.LocalID,
		},
		QoPIndeterminate: li.QoPIndeterminate, SAs: li.SAs, Conflicts: li.Conflicts, Lost: li.Lost,
		PolicyBroken: li.PolicyBroken, Reset: li.Reset, Created: li.Created, Changed: li.Changed, Reason: li.Reason,
	}
	if li.Tuple.Remote.IsValid() {
		l.Remote = li.Tuple.Remote.String()
	}
	if d.mon != nil {
		for _, k := range d.mon.KernelSAs(li) {
			l.KernelSAs = append(l.KernelSAs, api.KernelSA{Child: k.Child, ReqID: k.ReqID,
				SPIIn: fmt.Sprintf("%08x", k.SPIIn), SPIOut: fmt.Sprintf("%08x", k.SPIOut), Protocol: k.Protocol, Mode: k.Mode})
		}
	}
	switch li.Peer.Kind {
	case latch.KeyPeer:
		l.Peer.Kind = "key"
		if withKey {
			if e, ok := d.peerKey(li.Peer); ok {
				l.Peer.PublicKey = string(e.Key.PEM())
			}
		}
	case latch.AnonymousPeer:
		l.Peer.Kind = "anonymous"
	}
	return l
}

func (d *daemon) peerKey(p latch.Peer) (fingerprints.Entry, bool) {
	fp, err := fingerprints.ParseFingerprint(p.Fingerprint)
	if err != nil {
		return fingerprints.Entry{}, false
	}
	return d.store.Get(fp)
}

// channelBinding is the channel-binding value of a latch whose peer is a
// trusted key; anonymous peers have none.
func (d *daemon) channelBinding(li latch.LatchInfo) (*api.ChannelBinding, error) {
	switch li.Peer.Kind {
	case latch.KeyPeer:
	case latch.AnonymousPeer:
		return nil, errors.New("no channel binding: the peer is anonymous (RFC 5387 stand-alone BTNS); only peers with a trusted key have one")
	default:
		return nil, errors.New("no channel binding: the latch has no peer yet")
	}
	e, ok := d.peerKey(li.Peer)
	if !ok {
		return nil, fmt.Errorf("no channel binding: the peer's key %s is no longer in the key store", li.Peer.Fingerprint)
	}
	v := fingerprints.ChannelBinding(d.pad.hostPub, e.Key)
	return &api.ChannelBinding{
		Latch: uint64(li.ID), Value: hex.EncodeToString(v[:]), Label: fingerprints.ChannelBindingLabel,
		LocalKey: d.hostFP.String(), PeerKey: e.Key.Fingerprint.String(),
	}, nil
}

func apiAlert(a latch.Alert) api.Alert {
	out := api.Alert{Latch: uint64(a.LatchID), Listener: uint64(a.Listener), Proto: protoName(a.Tuple.Proto),
		Local: a.Tuple.Local.String(), From: a.From.String(), To: a.To.String(), Reason: a.Reason, At: a.At}
	if a.Tuple.Remote.IsValid() {
		out.Remote = a.Tuple.Remote.String()
	}
	return out
}
