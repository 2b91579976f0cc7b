package latchmon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/btnsd/btnsd/latchmon/latch"
)

// load returns the machine saved at path, or an empty one when there is
// none. A file that cannot be restored is never fatal: it is renamed aside
// (path.corrupt-<time>) for inspection, and the monitor starts with an
// empty LD; the latches it held are lost, which the log says.
func load(path string, now time.Time, logf func(string, ...any)) (mach *latch.Machine, restored bool) {
	if path == "" {
		return latch.New(), false
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return latch.New(), false
	case err != nil:
		logf("latch database %s: %v; starting with an empty one (its latches are lost)", path, err)
		return latch.New(), false
	}
	mach, err = latch.Restore(data)
	if err == nil {
		return mach, true
	}
	aside := fmt.Sprintf("%s.corrupt-%s", path, now.UTC().Format("20060102T150405.000000000"))
	if rerr := os.Rename(path, aside); rerr != nil {
		logf("latch database %s: %v; could not keep it aside: %v; starting with an empty one (its latches are lost)", path, err, rerr)
	} else {
		logf("latch database %s: %v; kept aside as %s; starting with an empty one (its latches are lost)", path, err, aside)
	}
	return latch.New(), false
}

// writeAtomic replaces path with data so that a crash leaves either the old
// file or the new one, whole: a temporary file in the same directory,
// written and fsynced, renamed over path, and the directory fsynced so that
// the rename itself survives a crash. The file is readable by its owner
// only: the LD names flows and peers.
func writeAtomic(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil // renamed; only the directory's durability is unsure
	}
	defer d.Close()
	_ = d.Sync()
	return nil
}
