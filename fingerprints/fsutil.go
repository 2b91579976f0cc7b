package fingerprints

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxFileSize bounds what the store and the key readers read from one file:
// the largest accepted key (RSA 16384 in PEM) is under 3 KiB.
const maxFileSize = 1 << 20

// readFileLimited reads a file of at most maxFileSize bytes.
func readFileLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, path)
}

// readLimited reads r to its end, refusing more than maxFileSize bytes.
func readLimited(r io.Reader, name string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes, no key file is", name, maxFileSize)
	}
	return b, nil
}

// stamp tells whether a file changed since it was read. Writers always
// rename a new file into place, so the inode alone changes on every write;
// size and time catch tools that write in place, mode catches a chmod
// (the store refuses metadata that others may write).
type stamp struct {
	ino   uint64
	size  int64
	mtime int64
	mode  uint32
}

func stampOfStat(st *syscall.Stat_t) stamp {
	return stamp{ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano(), mode: st.Mode}
}

// perm returns the permission bits.
func (s stamp) perm() os.FileMode { return os.FileMode(s.mode & 0o777) }

// statStamp returns the stamp of path, following symbolic links.
func statStamp(path string) (stamp, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return stamp{}, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	return stampOfStat(&st), nil
}

// readStamped reads a regular file of at most maxFileSize bytes, and
// returns its stamp; if the stamp equals old it reads nothing and reports
// the file unchanged. It costs one system call for an unchanged file (stat)
// and four to read one (open, fstat, read, close): loading a store of ten
// thousand keys reads twenty thousand files.
// O_NONBLOCK keeps a FIFO planted in the directory from hanging the reader.
func readStamped(path string, old stamp) (data []byte, st stamp, unchanged bool, err error) {
	if old != (stamp{}) {
		// Reloads mostly find files unchanged: one stat says so.
		if st, err := statStamp(path); err == nil && st == old {
			return nil, st, true, nil
		}
	}
	fd, err := ignoringEINTR(func() (int, error) {
		return syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	})
	if err != nil {
		return nil, st, false, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	var sys syscall.Stat_t
	if err := syscall.Fstat(fd, &sys); err != nil {
		return nil, st, false, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	st = stampOfStat(&sys)
	switch {
	case sys.Mode&syscall.S_IFMT != syscall.S_IFREG:
		return nil, st, false, fmt.Errorf("%s: not a regular file", filepath.Base(path))
	case st == old:
		return nil, st, true, nil
	case st.size > maxFileSize:
		return nil, st, false, fmt.Errorf("%s: larger than %d bytes, no key file is", filepath.Base(path), maxFileSize)
	}
	// Read what fstat promised, not to EOF: that would be one more call,
	// and writers never change a file in place (a torn in-place edit by
	// some other tool fails to parse and is read again on the next load).
	data = make([]byte, st.size)
	n := 0
	for n < len(data) {
		m, err := ignoringEINTR(func() (int, error) { return syscall.Read(fd, data[n:]) })
		if err != nil {
			return nil, st, false, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
	}
	return data[:n], st, false, nil
}

func ignoringEINTR(fn func() (int, error)) (int, error) {
	for {
		n, err := fn()
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// ReadKeyFile reads and parses a public key file; name "-" reads stdin
// from r instead. Errors name the file.
func ReadKeyFile(name string, stdin io.Reader) (*PublicKey, error) {
	var (
		b   []byte
		err error
	)
	if name == "-" {
		b, err = readLimited(stdin, "stdin")
	} else {
		b, err = readFileLimited(name)
	}
	if err != nil {
		return nil, err
	}
	k, err := ParsePublicKey(b)
	if err != nil {
		if name == "-" {
			name = "stdin"
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return k, nil
}

// writeFileAtomic replaces dir/name with data so that a reader sees either
// the old or the new content, never a mix: a temporary file in the same
// directory, chmod, fsync, rename. The caller fsyncs dir once it has
// renamed everything it meant to (syncDir).
func writeFileAtomic(dir, name string, data []byte, perm os.FileMode) error {
	p, err := writeTemp(dir, name, data, perm, true)
	if err != nil {
		return err
	}
	return p.commit()
}

// pendingFile is a complete temporary file waiting to be renamed over its
// final name.
type pendingFile struct{ tmp, final string }

// writeTemp writes data to a temporary file beside dir/name. Unless sync is
// set the data is not flushed: a batch flushes once for all its files
// (syncFS) before it renames any.
func writeTemp(dir, name string, data []byte, perm os.FileMode, sync bool) (p pendingFile, err error) {
	f, err := os.CreateTemp(dir, ".tmp-"+name+"-*")
	if err != nil {
		return p, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return p, err
	}
	if err = f.Chmod(perm); err != nil {
		return p, err
	}
	if sync {
		if err = f.Sync(); err != nil {
			return p, err
		}
	}
	if err = f.Close(); err != nil {
		return p, err
	}
	return pendingFile{f.Name(), filepath.Join(dir, name)}, nil
}

func (p pendingFile) commit() error {
	if err := os.Rename(p.tmp, p.final); err != nil {
		os.Remove(p.tmp)
		return err
	}
	return nil
}

func (p pendingFile) abort() { os.Remove(p.tmp) }

// syncFS flushes the whole file system dir is on: one flush for a batch of
// files instead of one per file.
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}

// syncDir makes renames and removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// lockName is the lock file in the key directory. Writers hold it
// exclusively for a read-modify-write; Reload holds it shared so that it
// never sees a key without its metadata halfway through an Add or Remove.
const lockName = ".lock"

// lockDir takes the directory's lock. A shared lock is best effort: if the
// lock file does not exist yet, or this user may not open it, reading goes
// on without it (atomic renames still keep every file whole).
func lockDir(dir string, exclusive bool) (unlock func(), err error) {
	path := filepath.Join(dir, lockName)
	var f *os.File
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	} else {
		f, err = os.Open(path)
		if err != nil {
			return func() {}, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("locking key store: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking key store: %w", err)
	}
	return func() { f.Close() }, nil // closing the file drops the lock
}
