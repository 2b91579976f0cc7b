package vici

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// VICI packet types (see the VICI README, "Packet layer").
const (
	pktCmdRequest  = 0
	pktCmdResponse = 1
	pktCmdUnknown  = 2
	pktEventReg    = 3
	pktEventUnreg  = 4
	pktEventOK     = 5
	pktEventUnkn   = 6
	pktEvent       = 7
)

// maxSegment bounds one transport segment. charon limits them to 512 KiB;
// the margin only guards against a corrupt length.
const maxSegment = 16 << 20

// wireConn sits between govici and the socket to charon. A goroutine reads
// whole VICI segments, and Read hands them to govici unchanged, except that:
//
//   - while held, event packets are kept back (in order) and only responses
//     pass. govici's Subscribe holds its event lock while it waits for the
//     confirmation, and its reader needs that lock to dispatch an event: an
//     event arriving during Subscribe deadlocks both for good. Holding events
//     until Subscribe returns removes the window.
//   - during a streamed command it counts the streamed events it hands over
//     and keeps at most streamWindow of them ahead of the consumer (see
//     consume). govici queues streamed events and the final response in a
//     buffer of 128 and silently discards what does not fit: a long
//     list-sas could lose entries, or its response, and then hang until the
//     deadline. With the window, nothing is discarded.
//
// Deadlines are passed to the socket, so govici's read deadlines still end
// its reader as they would without the wrapper.
type wireConn struct {
	net.Conn

	segs chan []byte   // from readLoop
	errc chan error    // readLoop's final error
	done chan struct{} // closed by Close
	once sync.Once

	mu       sync.Mutex
	holding  bool
	held     [][]byte
	released chan struct{} // poked when holding ends
	counting string        // streamed event name, "" for none

	counted  atomic.Uint64 // streamed events handed to govici
	consumed atomic.Uint64 // streamed events taken by the caller
	progress chan struct{} // poked by consume

	// Touched only by Read (govici's single reader goroutine).
	next []byte // segment waiting for the window
	cur  []byte // rest of the segment being read
	rerr error
}

// streamWindow bounds the streamed events handed to govici but not yet
// consumed; it must stay below govici's buffer of 128 packets.
const streamWindow = 64

func newWireConn(c net.Conn, hold bool) *wireConn {
	w := &wireConn{
		Conn:     c,
		segs:     make(chan []byte),
		errc:     make(chan error, 1),
		done:     make(chan struct{}),
		released: make(chan struct{}, 1),
		progress: make(chan struct{}, 1),
		holding:  hold,
	}
	go w.readLoop()
	return w
}

func (w *wireConn) readLoop() {
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(w.Conn, hdr[:]); err != nil {
			w.errc <- err
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > maxSegment {
			w.errc <- fmt.Errorf("vici: segment of %d bytes exceeds %d", n, maxSegment)
			return
		}
		seg := make([]byte, 4+n)
		copy(seg, hdr[:])
		if _, err := io.ReadFull(w.Conn, seg[4:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			w.errc <- err
			return
		}
		select {
		case w.segs <- seg:
		case <-w.done:
			return
		}
	}
}

// segEvent returns the name of an event segment, or ok false for any other
// packet.
func segEvent(seg []byte) (name string, ok bool) {
	if len(seg) < 6 || seg[4] != pktEvent {
		return "", false
	}
	l := int(seg[5])
	if len(seg) < 6+l {
		return "", false
	}
	return string(seg[6 : 6+l]), true
}

// Read implements net.Conn for govici's reader.
func (w *wireConn) Read(p []byte) (int, error) {
	for len(w.cur) == 0 {
		if w.rerr != nil {
			return 0, w.rerr
		}
		if w.next == nil {
			w.next, w.rerr = w.nextSeg()
			continue
		}
		if w.mustWait(w.next) {
			select {
			case <-w.progress:
			case <-w.done:
				w.rerr = net.ErrClosed
			}
			continue
		}
		w.cur, w.next = w.next, nil
	}
	n := copy(p, w.cur)
	w.cur = w.cur[n:]
	return n, nil
}

// nextSeg returns the next segment govici may see, keeping events back
// while holding.
func (w *wireConn) nextSeg() ([]byte, error) {
	for {
		w.mu.Lock()
		if !w.holding && len(w.held) > 0 {
			seg := w.held[0]
			w.held[0] = nil
			w.held = w.held[1:]
			w.mu.Unlock()
			return seg, nil
		}
		w.mu.Unlock()
		select {
		case seg := <-w.segs:
			w.mu.Lock()
			_, isEvent := segEvent(seg)
			hold := isEvent && (w.holding || len(w.held) > 0)
			if hold {
				w.held = append(w.held, seg)
			}
			w.mu.Unlock()
			if !hold {
				return seg, nil
			}
		case err := <-w.errc:
			return nil, err
		case <-w.released:
		case <-w.done:
			return nil, net.ErrClosed
		}
	}
}

// mustWait reports whether seg is a streamed event that would put govici
// more than streamWindow events ahead of the consumer; if not, it counts
// seg as handed over.
func (w *wireConn) mustWait(seg []byte) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.counting == "" {
		return false
	}
	if name, ok := segEvent(seg); !ok || name != w.counting {
		return false
	}
	if w.counted.Load()-w.consumed.Load() >= streamWindow {
		return true
	}
	w.counted.Add(1)
	return false
}

// release stops holding events back; the held ones go to govici first.
func (w *wireConn) release() {
	w.mu.Lock()
	w.holding = false
	w.mu.Unlock()
	select {
	case w.released <- struct{}{}:
	default:
	}
}

// stream starts (name != "") or ends (name == "") the flow control and
// counting of the streamed events called name.
func (w *wireConn) stream(name string) {
	w.mu.Lock()
	w.counting = name
	w.counted.Store(0)
	w.consumed.Store(0)
	w.mu.Unlock()
}

// consume records that the caller took one streamed event from govici.
func (w *wireConn) consume() {
	w.consumed.Add(1)
	select {
	case w.progress <- struct{}{}:
	default:
	}
}

// Close closes the socket and stops the reader goroutine.
func (w *wireConn) Close() error {
	var err error
	w.once.Do(func() {
		close(w.done)
		err = w.Conn.Close()
	})
	return err
}

// dialWire returns a govici dial function that connects to the Unix socket
// path within ctx and wraps the connection; the wrapper is stored in *out.
func dialWire(ctx context.Context, path string, hold bool, out **wireConn) func(context.Context, string, string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return nil, err
		}
		w := newWireConn(c, hold)
		*out = w
		return w, nil
	}
}
