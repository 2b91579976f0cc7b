package fingerprints

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchOptions tune Store.Watch. Zero values take the defaults.
type WatchOptions struct {
	// Debounce is how long the directory must stay quiet after a change
	// before the store is reloaded (default 100 ms): one btnsctl call
	// renames two files, a deployment tool may write hundreds.
	Debounce time.Duration
	// Rescan is the period of a reload that runs whatever the events say
	// (default 1 min). It catches lost events and re-watches a directory
	// that was deleted and created again.
	Rescan time.Duration
}

// Watch keeps s up to date with its directory until ctx ends. After each
// reload that changed something, or failed, it calls fn with the changes
// or the error; fn runs on Watch's goroutine. It watches the directory,
// never single files (editors and deployment tools replace files by rename,
// Kubernetes swaps symlinked directories); if the key directory does not
// exist yet, it watches the nearest parent up to the store's root and picks
// the directory up once it appears.
//
// Watch returns nil when ctx ends, or an error if it cannot watch at all.
func (s *Store) Watch(ctx context.Context, opts WatchOptions, fn func(Changes, error)) error {
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	if opts.Rescan <= 0 {
		opts.Rescan = time.Minute
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching key store: %w", err)
	}
	defer w.Close()

	watchDir := func() {
		for d := s.dir; ; d = filepath.Dir(d) {
			if w.Add(d) == nil || d == filepath.Clean(s.root) || d == filepath.Dir(d) {
				return
			}
		}
	}
	reload := func() {
		watchDir()
		ch, err := s.Reload()
		if err != nil || !ch.Empty() {
			fn(ch, err)
		}
	}
	watchDir()
	// Changes made between Open and the first watch would otherwise wait
	// for the first rescan.
	reload()

	debounce := time.NewTimer(opts.Debounce)
	debounce.Stop()
	defer debounce.Stop()
	rescan := time.NewTicker(opts.Rescan)
	defer rescan.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-w.Events:
			if !ok {
				return errors.New("watching key store: event channel closed")
			}
			debounce.Reset(opts.Debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("watching key store: error channel closed")
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				reload() // events were lost: read everything now
				continue
			}
			fn(Changes{}, fmt.Errorf("watching key store: %w", err))
		case <-debounce.C:
			reload()
		case <-rescan.C:
			reload()
		}
	}
}
