//go:build !linux

package xfrm

import (
	"context"
	"errors"
)

// ErrUnsupported: XFRM is Linux's.
var ErrUnsupported = errors.New("xfrm: not supported on this system")

// Watch is not supported off Linux.
func Watch(ctx context.Context) (<-chan Event, error) { return nil, ErrUnsupported }

// Policies is not supported off Linux.
func Policies(ctx context.Context) ([]Policy, error) { return nil, ErrUnsupported }

// States is not supported off Linux.
func States(ctx context.Context) ([]State, error) { return nil, ErrUnsupported }
