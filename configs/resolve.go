package configs

import (
	"slices"
	"strings"
)

// view answers the questions swanctl asks of a settings_t: which keys and
// which subsections a section has once references are followed. It mirrors
// settings.c (5.9.8): find_sections_buffered collects, for a path, the
// section itself, the sections it references (recursively), and the same
// path below the sections its ancestors reference; kv_filter and
// section_filter then enumerate them in that order, the first occurrence of
// a name winning and a NULL value hiding the key.
//
// strongSwan follows references without bound and can recurse forever on
// a section that references its own descendant; the view stops at
// maxRefDepth and reports a loop instead.
type view struct {
	root  *Section
	depth int
	steps int    // lookups in the current query
	total int    // lookups in all queries
	cur   *Ref   // the reference being followed
	err   *Error // set when a lookup went too deep or took too long
}

const (
	maxRefDepth = 64
	maxRefSteps = 1 << 20 // per query
	maxRefTotal = 1 << 24 // per file
)

func splitPath(p string) []string { return strings.Split(p, ".") }

// sections returns the sections that make up path (find_sections).
func (v *view) sections(path []string) []*Section {
	var out []*Section
	v.steps = 0
	v.find(v.root, path, false, &out)
	return out
}

// find is find_sections_buffered.
func (v *view) find(sec *Section, key []string, ignoreRefs bool, out *[]*Section) {
	if sec == nil || v.err != nil {
		return
	}
	v.steps++
	v.total++
	if v.depth++; v.depth > maxRefDepth || v.steps > maxRefSteps || v.total > maxRefTotal {
		r := v.cur
		if r == nil {
			r = &Ref{Pos: sec.Pos}
		}
		if v.depth > maxRefDepth {
			v.err = errorf(r.Pos, "reference %q leads to a reference loop (followed more than %d levels deep)", r.Name, maxRefDepth)
		} else {
			v.err = errorf(r.Pos, "references too complex to resolve (more than %d lookups)", maxRefSteps)
		}
		v.depth--
		return
	}
	defer func() { v.depth-- }()

	var found *Section
	if key[0] == "" {
		found = sec // an empty component names the section itself
	} else {
		found = sec.Sub(key[0])
	}
	if found != nil {
		if len(key) > 1 {
			v.find(found, key[1:], false, out)
		} else if !slices.Contains(*out, found) {
			// ignore if already added to avoid loops
			*out = append(*out, found)
			// add all sections that are referenced here
			for i := range found.Refs {
				v.resolve(&found.Refs[i], out)
			}
		}
	}
	if !ignoreRefs && sec != found && len(sec.Refs) > 0 {
		// find matching sub-sections relative to the referenced sections
		for i := range sec.Refs {
			var refs []*Section
			v.resolve(&sec.Refs[i], &refs)
			for _, r := range refs {
				// references in r were resolved by resolve() already
				v.find(r, key, true, out)
			}
		}
	}
}

// resolve is resolve_reference: references are absolute paths.
func (v *view) resolve(r *Ref, out *[]*Section) {
	saved := v.cur
	v.cur = r
	v.find(v.root, splitPath(r.Name), false, out)
	v.cur = saved
}

// keys returns the settings of path in enumeration order, without the
// hidden ones (create_key_value_enumerator with kv_filter).
func (v *view) keys(path []string) []*KeyValue {
	var out []*KeyValue
	seen := map[string]bool{}
	for _, s := range v.sections(path) {
		for _, kv := range s.Keys {
			if seen[kv.Key] {
				continue
			}
			seen[kv.Key] = true
			if kv.Null {
				continue
			}
			out = append(out, kv)
		}
	}
	return out
}

// subsections returns the names of the subsections of path in enumeration
// order with the position of their first definition
// (create_section_enumerator with section_filter).
func (v *view) subsections(path []string) []*Section {
	var out []*Section
	seen := map[string]bool{}
	for _, s := range v.sections(path) {
		for _, c := range s.Sections {
			if seen[c.Name] {
				continue
			}
			seen[c.Name] = true
			out = append(out, c)
		}
	}
	return out
}

// value returns the effective setting key of path, or nil when it is
// absent or hidden.
func (v *view) value(path []string, key string) *KeyValue {
	for _, s := range v.sections(path) {
		if kv := s.Value(key); kv != nil {
			if kv.Null {
				return nil
			}
			return kv
		}
	}
	return nil
}

// checkRefs reports references that name no section and reference loops.
func (v *view) checkRefs() ErrorList {
	var errs ErrorList
	var walk func(s *Section)
	walk = func(s *Section) {
		for i := range s.Refs {
			r := &s.Refs[i]
			var found []*Section
			v.err, v.steps = nil, 0
			v.resolve(r, &found)
			switch {
			case v.err != nil:
				errs = append(errs, v.err)
				v.err = nil
			case len(found) == 0:
				errs = append(errs, errorf(r.Pos, "reference %q names no section (references are absolute paths, such as connections.base)", r.Name))
			}
		}
		for _, c := range s.Sections {
			walk(c)
		}
	}
	walk(v.root)
	return errs
}
