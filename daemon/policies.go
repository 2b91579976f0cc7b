package daemon

import (
	"errors"
	"os"
	"strings"

	"github.com/btnsd/btnsd/api"
	"github.com/btnsd/btnsd/btnsauth"
	"github.com/btnsd/btnsd/configs"
	"github.com/btnsd/btnsd/fingerprints"
)

// policies keeps the policy directory's last good state: a file that is
// bad now runs its last good version, if it ever had one.
type policies struct {
	dir      string
	lastGood map[string]*configs.File // by file name
	current  *configs.Set             // what runs: good files and last good versions
	files    []api.PolicyFile         // for the API, sorted by name
	hash     map[string][32]byte      // content hash of each file at the last load
}

func newPolicies(dir string) *policies {
	return &policies{dir: dir, lastGood: map[string]*configs.File{}}
}

// load re-reads the directory and reports whether what runs changed. A
// BTNS connection that btnsauth refuses makes its file bad, like a syntax
// error: both are properties of the file alone.
func (p *policies) load(host *fingerprints.PublicKey) (changed bool, errs []error) {
	// The root file system, so that includes and key files may name
	// absolute paths; configs names files relative to it, so errors and
	// status get their leading slash back (absolute).
	set, errs := configs.LoadDir(os.DirFS("/"), p.dir, configs.Options{})
	absolute(errs)
	hash := map[string][32]byte{}
	var run []*configs.File
	var status []api.PolicyFile
	for _, f := range set.Files {
		hash[f.Name] = f.Hash
		if f.Err == nil {
			if err := checkExpand(f, host); err != nil {
				g := *f
				g.Conns, g.Err = nil, err
				f = &g
				errs = append(errs, err)
			}
		}
		st := api.PolicyFile{File: "/" + f.Name, Running: "current"}
		if f.Err == nil {
			p.lastGood[f.Name] = f
			run = append(run, f)
		} else {
			absolute(configs.Errors(f.Err))
			st.Error = f.Err.Error()
			st.Running = "none"
			if g, ok := p.lastGood[f.Name]; ok {
				run = append(run, g)
				st.Running = "last-good"
			}
		}
		if st.Running != "none" {
			for _, c := range p.lastGood[f.Name].Conns {
				st.Conns = append(st.Conns, c.Name)
			}
		}
		status = append(status, st)
	}
	// A file that is gone is gone, good or bad.
	for name := range p.lastGood {
		if _, ok := hash[name]; !ok {
			delete(p.lastGood, name)
		}
	}
	cur, dups := configs.NewSet(run)
	absolute(dups)
	errs = append(errs, dups...)
	changed = p.current == nil || !sameFiles(p.hash, hash) || len(dups) > 0
	p.current, p.files, p.hash = cur, status, hash
	return changed, errs
}

func sameFiles(a, b map[string][32]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// checkExpand returns the first error btnsauth finds in f's BTNS
// connections, as a configs error at the connection's position.
func checkExpand(f *configs.File, host *fingerprints.PublicKey) error {
	for _, c := range f.Conns {
		if _, err := btnsauth.Expand(c, nil, host); err != nil {
			return &configs.Error{File: c.Pos.File, Line: c.Pos.Line, Col: c.Pos.Col, Msg: err.Error(), Err: err}
		}
	}
	return nil
}

// absolute gives the file names of configs errors their leading slash.
func absolute(errs []error) {
	for _, err := range errs {
		var e *configs.Error
		if errors.As(err, &e) && !strings.HasPrefix(e.File, "/") {
			e.File = "/" + e.File
		}
	}
}
