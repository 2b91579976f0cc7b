package configs

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchOptions tune Watch.
type WatchOptions struct {
	// Debounce is how long the directories must stay quiet after an event
	// before a change is reported. Default 20 ms: an editor's save (write
	// a temporary file, rename it) or a Kubernetes ConfigMap swap (..data
	// symlink) is one change, not three.
	Debounce time.Duration
	// Rescan reports a change this often even without events, so that a
	// missed event (queue overflow, a directory removed and created again)
	// is caught. Default 30 s. The consumer compares content, so a rescan
	// that finds nothing new costs one read of the directory.
	Rescan time.Duration
	// Logf receives watch errors; nil discards them.
	Logf func(format string, args ...any)
}

// Watch watches dirs (not the files in them: editors save by rename, and a
// ConfigMap update only touches ..data) and sends on the returned channel
// whenever something in them may have changed. Notifications coalesce: the
// channel holds at most one. A directory that does not exist yet is picked
// up at the next rescan. The channel is closed when ctx is done.
//
// Watch reports changes, not what changed: the consumer re-reads the
// directories and applies only what differs.
func Watch(ctx context.Context, dirs []string, opts WatchOptions) (<-chan struct{}, error) {
	if opts.Debounce <= 0 {
		opts.Debounce = 20 * time.Millisecond
	}
	if opts.Rescan <= 0 {
		opts.Rescan = 30 * time.Second
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	addAll := func() {
		for _, d := range dirs {
			if err := w.Add(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				logf("watch %s: %v", d, err)
			}
		}
	}
	addAll()

	out := make(chan struct{}, 1)
	notify := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	go func() {
		defer close(out)
		defer w.Close()
		debounce := time.NewTimer(time.Hour)
		debounce.Stop()
		rescan := time.NewTicker(opts.Rescan)
		defer rescan.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Op == fsnotify.Chmod {
					continue
				}
				debounce.Reset(opts.Debounce)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				// fsnotify.ErrEventOverflow included: events were lost,
				// so report a change and let the consumer re-read.
				logf("watch: %v", err)
				debounce.Reset(opts.Debounce)
			case <-debounce.C:
				notify()
			case <-rescan.C:
				addAll()
				notify()
			}
		}
	}()
	return out, nil
}
