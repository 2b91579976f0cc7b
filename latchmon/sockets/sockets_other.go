//go:build !linux

package sockets

import (
	"context"
	"errors"
	"runtime"
)

var errUnsupported = errors.New("sockets: sock_diag is not available on " + runtime.GOOS)

// Handle reaches the sockets of one network namespace; only Linux has one.
type Handle struct{}

// Close does nothing.
func (h *Handle) Close() error { return nil }

// Dump fails: sock_diag is Linux only.
func (h *Handle) Dump(context.Context) ([]Socket, error) { return nil, errUnsupported }

// Destroy fails: sock_diag is Linux only.
func (h *Handle) Destroy(Socket) error { return errUnsupported }

// Watch fails: sock_diag is Linux only.
func (h *Handle) Watch(context.Context) (<-chan Event, error) { return nil, errUnsupported }

// Dump fails: sock_diag is Linux only.
func Dump(context.Context) ([]Socket, error) { return nil, errUnsupported }

// Destroy fails: sock_diag is Linux only.
func Destroy(Socket) error { return errUnsupported }

// Watch fails: sock_diag is Linux only.
func Watch(context.Context) (<-chan Event, error) { return nil, errUnsupported }
