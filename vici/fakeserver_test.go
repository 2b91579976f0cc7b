package vici

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// This file is a minimal VICI server at the wire level, so that Client and
// Watch run against real sockets and govici's real code without charon.
// Messages are encoded by hand (the format is in the VICI README); a test
// cross-checks this encoder against govici's.

func encodeMsg(b *bytes.Buffer, m *Msg) {
	for _, k := range m.Keys() {
		switch v := m.Get(k).(type) {
		case string:
			b.WriteByte(3)
			b.WriteByte(byte(len(k)))
			b.WriteString(k)
			binary.Write(b, binary.BigEndian, uint16(len(v)))
			b.WriteString(v)
		case []string:
			b.WriteByte(4)
			b.WriteByte(byte(len(k)))
			b.WriteString(k)
			for _, it := range v {
				b.WriteByte(5)
				binary.Write(b, binary.BigEndian, uint16(len(it)))
				b.WriteString(it)
			}
			b.WriteByte(6)
		case *Msg:
			b.WriteByte(1)
			b.WriteByte(byte(len(k)))
			b.WriteString(k)
			encodeMsg(b, v)
			b.WriteByte(2)
		}
	}
}

func decodeMsg(data []byte) (*Msg, error) {
	r := bytes.NewReader(data)
	name := func() (string, error) {
		l, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		buf := make([]byte, l)
		_, err = io.ReadFull(r, buf)
		return string(buf), err
	}
	value := func() (string, error) {
		var l uint16
		if err := binary.Read(r, binary.BigEndian, &l); err != nil {
			return "", err
		}
		buf := make([]byte, l)
		_, err := io.ReadFull(r, buf)
		return string(buf), err
	}
	stack := []*Msg{NewMsg()}
	for r.Len() > 0 {
		t, _ := r.ReadByte()
		cur := stack[len(stack)-1]
		switch t {
		case 1:
			k, err := name()
			if err != nil {
				return nil, err
			}
			sub := NewMsg()
			cur.Set(k, sub)
			stack = append(stack, sub)
		case 2:
			if len(stack) == 1 {
				return nil, errors.New("unbalanced section end")
			}
			stack = stack[:len(stack)-1]
		case 3:
			k, err := name()
			if err != nil {
				return nil, err
			}
			v, err := value()
			if err != nil {
				return nil, err
			}
			cur.Set(k, v)
		case 4:
			k, err := name()
			if err != nil {
				return nil, err
			}
			list := []string{}
			for {
				t, err := r.ReadByte()
				if err != nil {
					return nil, err
				}
				if t == 6 {
					break
				}
				if t != 5 {
					return nil, fmt.Errorf("unexpected element %d in list", t)
				}
				v, err := value()
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			cur.Set(k, list)
		default:
			return nil, fmt.Errorf("unexpected element type %d", t)
		}
	}
	if len(stack) != 1 {
		return nil, errors.New("unterminated section")
	}
	return stack[0], nil
}

// segment builds a transport segment for one packet.
func segment(ptype byte, name string, m *Msg) []byte {
	var body bytes.Buffer
	body.WriteByte(ptype)
	switch ptype {
	case pktCmdRequest, pktEventReg, pktEventUnreg, pktEvent:
		body.WriteByte(byte(len(name)))
		body.WriteString(name)
	}
	if m != nil {
		encodeMsg(&body, m)
	}
	out := make([]byte, 4, 4+body.Len())
	binary.BigEndian.PutUint32(out, uint32(body.Len()))
	return append(out, body.Bytes()...)
}

// streamed is one event a command streams before its response.
type streamed struct {
	name string
	msg  *Msg
}

// reply is what the fake answers to a command: events to stream, then
// resp (nil for CMD_UNKNOWN). With hang, it answers nothing.
type reply struct {
	events []streamed
	resp   *Msg
	hang   bool
}

// fakeCharon listens on a Unix socket and speaks VICI.
type fakeCharon struct {
	t    testing.TB
	path string

	mu       sync.Mutex
	ln       *net.UnixListener
	conns    map[*fakeConn]bool
	requests []request
	// handle answers commands; nil answers every command with an empty
	// success response.
	handle func(fc *fakeConn, cmd string, in *Msg) reply
	// onRegister, if set, runs before an event registration is confirmed.
	onRegister func(fc *fakeConn, event string)
	accepted   chan *fakeConn
	wg         sync.WaitGroup
}

type request struct {
	cmd string
	in  *Msg
}

type fakeConn struct {
	srv    *fakeCharon
	c      net.Conn
	wmu    sync.Mutex
	mu     sync.Mutex
	events map[string]bool
}

func newFakeCharon(t testing.TB) *fakeCharon {
	dir, err := os.MkdirTemp("", "vici")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeCharon{
		t:        t,
		path:     filepath.Join(dir, "charon.vici"),
		conns:    map[*fakeConn]bool{},
		accepted: make(chan *fakeConn, 100),
	}
	f.start()
	t.Cleanup(f.stop)
	return f
}

// start listens (again) on the socket path.
func (f *fakeCharon) start() {
	os.Remove(f.path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: f.path, Net: "unix"})
	if err != nil {
		f.t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false) // a dead charon leaves its socket: ECONNREFUSED
	f.mu.Lock()
	f.ln = ln
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fc := &fakeConn{srv: f, c: c, events: map[string]bool{}}
			f.mu.Lock()
			f.conns[fc] = true
			f.mu.Unlock()
			select {
			case f.accepted <- fc:
			default:
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				fc.serve()
			}()
		}
	}()
}

// stop closes the listener and every connection, like charon exiting.
func (f *fakeCharon) stop() {
	f.mu.Lock()
	if f.ln != nil {
		f.ln.Close()
		f.ln = nil
	}
	for fc := range f.conns {
		fc.c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// dropConns closes every connection but keeps listening.
func (f *fakeCharon) dropConns() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for fc := range f.conns {
		fc.c.Close()
	}
}

func (f *fakeCharon) numConns() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.conns)
}

func (f *fakeCharon) cmds() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.requests {
		out = append(out, r.cmd)
	}
	return out
}

func (f *fakeCharon) lastRequest(cmd string) *Msg {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.requests) - 1; i >= 0; i-- {
		if f.requests[i].cmd == cmd {
			return f.requests[i].in
		}
	}
	return nil
}

func (fc *fakeConn) write(seg []byte) error {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	_, err := fc.c.Write(seg)
	return err
}

// emit sends an event if the connection registered for it, as charon does.
func (fc *fakeConn) emit(name string, m *Msg) error {
	fc.mu.Lock()
	ok := fc.events[name]
	fc.mu.Unlock()
	if !ok {
		return nil
	}
	return fc.write(segment(pktEvent, name, m))
}

func (fc *fakeConn) subscribed(name string) bool {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.events[name]
}

func (fc *fakeConn) serve() {
	defer func() {
		fc.c.Close()
		fc.srv.mu.Lock()
		delete(fc.srv.conns, fc)
		fc.srv.mu.Unlock()
	}()
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(fc.c, hdr[:]); err != nil {
			return
		}
		buf := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(fc.c, buf); err != nil || len(buf) == 0 {
			return
		}
		ptype, rest := buf[0], buf[1:]
		var name string
		if len(rest) > 0 {
			l := int(rest[0])
			if len(rest) < 1+l {
				return
			}
			name, rest = string(rest[1:1+l]), rest[1+l:]
		}
		switch ptype {
		case pktEventReg, pktEventUnreg:
			if ptype == pktEventReg && fc.srv.onRegister != nil {
				fc.srv.onRegister(fc, name)
			}
			fc.mu.Lock()
			fc.events[name] = ptype == pktEventReg
			fc.mu.Unlock()
			if fc.write(segment(pktEventOK, "", nil)) != nil {
				return
			}
		case pktCmdRequest:
			in, err := decodeMsg(rest)
			if err != nil {
				fc.srv.t.Errorf("fake charon: bad request %s: %v", name, err)
				return
			}
			fc.srv.mu.Lock()
			fc.srv.requests = append(fc.srv.requests, request{name, in})
			handle := fc.srv.handle
			fc.srv.mu.Unlock()
			r := reply{resp: NewMsg()}
			if handle != nil {
				r = handle(fc, name, in)
			}
			if r.hang {
				continue
			}
			for _, e := range r.events {
				if fc.emit(e.name, e.msg) != nil {
					return
				}
			}
			seg := segment(pktCmdUnknown, "", nil)
			if r.resp != nil {
				seg = segment(pktCmdResponse, "", r.resp)
			}
			if fc.write(seg) != nil {
				return
			}
		}
	}
}

// checkLeaks fails the test if goroutines started during it are still
// running at its end.
func checkLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutines: %d at start, %d at end:\n%s", before, runtime.NumGoroutine(), buf[:n])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// msgOf builds a Msg from alternating keys and values.
func msgOf(kv ...any) *Msg {
	m := NewMsg()
	for i := 0; i+1 < len(kv); i += 2 {
		m.Set(kv[i].(string), kv[i+1])
	}
	return m
}

func TestFakeEncoderMatchesGovici(t *testing.T) {
	// The fake server decodes what govici encodes, and govici decodes what
	// the fake encodes: an echo through Client.Call round-trips.
	f := newFakeCharon(t)
	f.handle = func(_ *fakeConn, cmd string, in *Msg) reply { return reply{resp: in} }
	c := New(f.path)
	defer c.Close()
	in := sampleMsg()
	out, err := c.Call(t.Context(), "echo", in)
	if err != nil {
		t.Fatal(err)
	}
	if !in.Equal(out) {
		t.Fatalf("echo differs:\n%s\nvs\n%s", in.Format(), out.Format())
	}
	if got := f.lastRequest("echo"); !in.Equal(got) {
		t.Fatalf("server decoded:\n%s", got.Format())
	}
	if !strings.Contains(f.path, "charon.vici") {
		t.Fatal(f.path)
	}
}
