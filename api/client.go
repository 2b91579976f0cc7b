package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
)

// ErrNotRunning means nothing listens on the API socket: btnsd is not
// running (or runs with another socket).
var ErrNotRunning = errors.New("btnsd is not running")

// Client talks to btnsd's API over its Unix socket.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the API socket at path.
func NewClient(path string) *Client {
	if path == "" {
		path = DefaultSocket
	}
	return &Client{
		socket: path,
		hc: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		}},
	}
}

// Socket returns the socket path.
func (c *Client) Socket() string { return c.socket }

// StatusError is an error answer of the API.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string { return fmt.Sprintf("btnsd: %s (HTTP %d)", e.Message, e.Code) }

// Do sends a request with an optional JSON body and decodes a JSON answer
// into out (if not nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://btnsd"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// send sends req and returns a response with a success status, or the
// error: ErrNotRunning when nothing listens, a *StatusError for an error
// answer.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (no answer on %s)", ErrNotRunning, c.socket)
		}
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return nil, &StatusError{Code: resp.StatusCode, Message: e.Error}
	}
	return resp, nil
}

// Status returns GET /v1/status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := c.Do(ctx, http.MethodGet, "/v1/status", nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Latches returns GET /v1/latches.
func (c *Client) Latches(ctx context.Context) ([]Latch, error) {
	var l []Latch
	return l, c.Do(ctx, http.MethodGet, "/v1/latches", nil, &l)
}

// Latch returns GET /v1/latches/{id} (INQUIRE_LATCH).
func (c *Client) Latch(ctx context.Context, id uint64) (*Latch, error) {
	var l Latch
	if err := c.Do(ctx, http.MethodGet, fmt.Sprintf("/v1/latches/%d", id), nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// FindLatch returns GET /v1/latches/find (FIND_LATCH) for a 5-tuple, or a
// 3-tuple (remote empty) for a listener latch.
func (c *Client) FindLatch(ctx context.Context, proto, local, remote string) (*Latch, error) {
	q := url.Values{"proto": {proto}, "local": {local}}
	if remote != "" {
		q.Set("remote", remote)
	}
	var l Latch
	if err := c.Do(ctx, http.MethodGet, "/v1/latches/find?"+q.Encode(), nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// CreateLatch is POST /v1/latches.
func (c *Client) CreateLatch(ctx context.Context, req CreateLatch) (*Latch, error) {
	var l Latch
	if err := c.Do(ctx, http.MethodPost, "/v1/latches", req, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// ReleaseLatch is DELETE /v1/latches/{id} (RELEASE_LATCH).
func (c *Client) ReleaseLatch(ctx context.Context, id uint64) error {
	return c.Do(ctx, http.MethodDelete, fmt.Sprintf("/v1/latches/%d", id), nil, nil)
}

// CloseLatch is POST /v1/latches/{id}/close: an administrative close, which
// resets the flow.
func (c *Client) CloseLatch(ctx context.Context, id uint64, reason string) error {
	return c.Do(ctx, http.MethodPost, fmt.Sprintf("/v1/latches/%d/close", id), CloseLatch{Reason: reason}, nil)
}

// ChannelBinding is GET /v1/latches/{id}/channel-binding.
func (c *Client) ChannelBinding(ctx context.Context, id uint64) (*ChannelBinding, error) {
	var cb ChannelBinding
	if err := c.Do(ctx, http.MethodGet, fmt.Sprintf("/v1/latches/%d/channel-binding", id), nil, &cb); err != nil {
		return nil, err
	}
	return &cb, nil
}

// Alerts follows GET /v1/alerts, calling fn for every alert until ctx ends,
// the daemon closes the stream, or fn returns an error.
func (c *Client) Alerts(ctx context.Context, fn func(Alert) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://btnsd/v1/alerts", nil)
	if err != nil {
		return err
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var a Alert
		if err := dec.Decode(&a); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := fn(a); err != nil {
			return err
		}
	}
}
