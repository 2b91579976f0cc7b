package configs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/btnsd/btnsd/vici"
)

// This file checks the mapping against the real swanctl, when one is
// installed: swanctl --load-conns --file F talks to a fake VICI server
// that records the load-conn requests, which must equal what Swanctl
// returns for F. No charon is needed.

// VICI wire format (libvici, vici_message.h): a 4-byte big-endian length,
// then a packet: a type byte, for named types a name (1-byte length), then
// message elements.
const (
	pktCmdRequest  = 0
	pktCmdResponse = 1

	elSectionStart = 1
	elSectionEnd   = 2
	elKeyValue     = 3
	elListStart    = 4
	elListItem     = 5
	elListEnd      = 6
)

type wireReader struct {
	b   []byte
	err error
}

func (r *wireReader) byte() byte {
	if r.err != nil || len(r.b) < 1 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *wireReader) bytes(n int) string {
	if r.err != nil || len(r.b) < n {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *wireReader) name() string { return r.bytes(int(r.byte())) }

func (r *wireReader) value() string {
	hi, lo := r.byte(), r.byte()
	return r.bytes(int(hi)<<8 | int(lo))
}

func (r *wireReader) fail() {
	if r.err == nil {
		r.err = errors.New("short VICI message")
	}
}

// decodeWireMsg decodes message elements into a vici.Msg.
func decodeWireMsg(b []byte) (*vici.Msg, error) {
	r := &wireReader{b: b}
	root := vici.NewMsg()
	stack := []*vici.Msg{root}
	var list []string
	var listName string
	inList := false
	for len(r.b) > 0 && r.err == nil {
		cur := stack[len(stack)-1]
		switch t := r.byte(); t {
		case elSectionStart:
			s := vici.NewMsg()
			cur.Set(r.name(), s)
			stack = append(stack, s)
		case elSectionEnd:
			if len(stack) == 1 {
				return nil, errors.New("unbalanced section end")
			}
			stack = stack[:len(stack)-1]
		case elKeyValue:
			k := r.name()
			cur.Set(k, r.value())
		case elListStart:
			listName, list, inList = r.name(), []string{}, true
		case elListItem:
			if !inList {
				return nil, errors.New("list item outside a list")
			}
			list = append(list, r.value())
		case elListEnd:
			cur.Set(listName, list)
			inList = false
		default:
			return nil, fmt.Errorf("unknown element type %d", t)
		}
	}
	return root, r.err
}

func encodeWireMsg(w *bytes.Buffer, m *vici.Msg) {
	for _, k := range m.Keys() {
		switch v := m.Get(k).(type) {
		case string:
			w.WriteByte(elKeyValue)
			w.WriteByte(byte(len(k)))
			w.WriteString(k)
			binary.Write(w, binary.BigEndian, uint16(len(v)))
			w.WriteString(v)
		case []string:
			w.WriteByte(elListStart)
			w.WriteByte(byte(len(k)))
			w.WriteString(k)
			for _, it := range v {
				w.WriteByte(elListItem)
				binary.Write(w, binary.BigEndian, uint16(len(it)))
				w.WriteString(it)
			}
			w.WriteByte(elListEnd)
		case *vici.Msg:
			w.WriteByte(elSectionStart)
			w.WriteByte(byte(len(k)))
			w.WriteString(k)
			encodeWireMsg(w, v)
			w.WriteByte(elSectionEnd)
		}
	}
}

// fakeCharon serves get-conns (no connections), load-conn and unload-conn
// (success) and records every load-conn request.
type fakeCharon struct {
	ln   net.Listener
	mu   sync.Mutex
	reqs []*vici.Msg
	errs []error
	wg   sync.WaitGroup
}

func startFakeCharon(t *testing.T) (*fakeCharon, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "charon.vici")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCharon{ln: ln}
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(func() { ln.Close(); f.wg.Wait() })
	return f, "unix://" + sock
}

func (f *fakeCharon) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer c.Close()
			if err := f.conn(c); err != nil && !errors.Is(err, io.EOF) {
				f.mu.Lock()
				f.errs = append(f.errs, err)
				f.mu.Unlock()
			}
		}()
	}
}

func (f *fakeCharon) conn(c net.Conn) error {
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	for {
		var n uint32
		if err := binary.Read(c, binary.BigEndian, &n); err != nil {
			return err
		}
		pkt := make([]byte, n)
		if _, err := io.ReadFull(c, pkt); err != nil {
			return err
		}
		r := &wireReader{b: pkt}
		if typ := r.byte(); typ != pktCmdRequest {
			return fmt.Errorf("unexpected packet type %d", typ)
		}
		cmd := r.name()
		if r.err != nil {
			return r.err
		}
		msg, err := decodeWireMsg(r.b)
		if err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		resp := vici.NewMsg()
		switch cmd {
		case "get-conns":
			resp.Set("conns", []string{})
		case "load-conn":
			f.mu.Lock()
			f.reqs = append(f.reqs, msg)
			f.mu.Unlock()
			resp.Set("success", "yes")
		default:
			resp.Set("success", "yes")
		}
		var w bytes.Buffer
		w.WriteByte(pktCmdResponse)
		encodeWireMsg(&w, resp)
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(w.Len()))
		if _, err := c.Write(append(hdr[:], w.Bytes()...)); err != nil {
			return err
		}
	}
}

// runSwanctl runs "swanctl --load-conns --file file" against a fake
// charon and returns the load-conn requests it sent and its output. It
// skips the test when swanctl is not installed, unless the tests must run
// (CI=true or BTNSD_INTEGRATION=1, as scripts/test.sh sets): then it fails.
func runSwanctl(t *testing.T, file string) ([]*vici.Msg, string) {
	t.Helper()
	bin, err := exec.LookPath("swanctl")
	if err != nil {
		if os.Getenv("CI") == "true" || os.Getenv("BTNSD_INTEGRATION") == "1" {
			t.Fatal("swanctl not installed; run scripts/setup.sh")
		}
		t.Skip("swanctl not installed")
	}
	f, uri := startFakeCharon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--load-conns", "--uri", uri, "--file", file)
	conf := filepath.Join(t.TempDir(), "strongswan.conf")
	if err := os.WriteFile(conf, []byte("swanctl {\n  load = pem pkcs1 x509 pubkey openssl\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+conf)
	out, _ := cmd.CombinedOutput()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.errs {
		t.Errorf("fake charon: %v", e)
	}
	return f.reqs, string(out)
}
