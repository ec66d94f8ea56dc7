package station

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/wsc-project/wsc/ca"
	"go.yaml.in/yaml/v3"
)

// ConfigError is one problem of a station configuration file: the key it
// concerns (a path such as "work_order.proofs[1]") and the line of that key
// in the file (0 when the file has no such key, e.g. a required key that is
// missing, and no enclosing key either).
type ConfigError struct {
	Line int
	Key  string
	Err  error
}

// Error renders "line N: message".
func (e *ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return e.Err.Error()
}

// Unwrap returns the problem.
func (e *ConfigError) Unwrap() error { return e.Err }

// keyedError is a check failure that knows which key it is about. Its text
// is the failure's own, so LoadConfig's messages do not change.
type keyedError struct {
	key string
	err error
}

func keyed(key string, err error) error { return &keyedError{key: key, err: err} }

func (e *keyedError) Error() string { return e.err.Error() }
func (e *keyedError) Unwrap() error { return e.err }

// unknownField matches yaml.v3's message for a key that is not in the
// struct.
var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

// yamlLine matches the "line N: " prefix of yaml.v3's decoding errors.
var yamlLine = regexp.MustCompile(`^line (\d+): `)

// CheckConfig reads the configuration file at path and returns every
// problem it finds, each with the line of the key concerned, sorted by
// line: YAML syntax, unknown keys and wrong types; missing or invalid
// values (the checks LoadConfig makes); then what the station would load at
// start — vendor root files that do not exist or hold no certificate, a CA
// folder without root.crt, a certificate profile that does not load. The
// config is returned when it decoded (nil otherwise).
func CheckConfig(path string) (*FileConfig, []*ConfigError) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, []*ConfigError{{Err: fmt.Errorf("station config: %w", err)}}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, yamlErrors(err)
	}
	var c FileConfig
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, yamlErrors(err)
	}
	var out []*ConfigError
	add := func(err error) {
		var k *keyedError
		if errors.As(err, &k) {
			out = append(out, &ConfigError{Line: lineOf(&root, k.key), Key: k.key, Err: k.err})
			return
		}
		out = append(out, &ConfigError{Err: err})
	}
	makeAbsolute(&c, filepath.Dir(path))
	if err := c.check(); err != nil {
		for _, e := range unjoin(err) {
			add(e)
		}
	}
	for _, list := range []struct {
		key   string
		paths []string
	}{{"tpm_vendor_roots", c.TPMVendorRoots}, {"tpm_vendor_intermediates", c.TPMVendorIntermediates},
		{"se_vendor_roots", c.SEVendorRoots}, {"se_vendor_intermediates", c.SEVendorIntermediates}} {
		for i, p := range list.paths {
			if _, err := LoadCertPool(p); err != nil {
				add(keyed(fmt.Sprintf("%s[%d]", list.key, i), fmt.Errorf("%s: %w", list.key, err)))
			}
		}
	}
	if c.CA.Dir != "" {
		if _, err := os.Stat(filepath.Join(c.CA.Dir, "root.crt")); err != nil {
			add(keyed("ca.dir", fmt.Errorf("ca.dir: %s holds no CA (root.crt): %w", c.CA.Dir, err)))
		}
	}
	if p := c.WorkOrder.Profile; p != "" && p != "default" {
		if _, err := ca.LoadProfile(p); err != nil {
			add(keyed("work_order.profile", fmt.Errorf("work_order.profile: %w", err)))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return &c, out
}

// unjoin splits an errors.Join result.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// yamlErrors turns a yaml.v3 error (syntax, or one line per unknown key or
// wrong type) into ConfigErrors with their lines.
func yamlErrors(err error) []*ConfigError {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	out := make([]*ConfigError, 0, len(msgs))
	for _, m := range msgs {
		m = unknownField.ReplaceAllString(m, "unknown key \"$1\" (see docs/station-config.md)")
		ce := &ConfigError{Err: errors.New(m)}
		if g := yamlLine.FindStringSubmatch(m); g != nil {
			ce.Line, _ = strconv.Atoi(g[1])
			ce.Err = errors.New(strings.TrimPrefix(m, g[0]))
		}
		out = append(out, ce)
	}
	return out
}

// lineOf returns the line of the key at path ("a.b[2].c") in a YAML
// document, or of its deepest ancestor present; 0 if none is.
func lineOf(doc *yaml.Node, path string) int {
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, part := range strings.Split(path, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 && strings.HasSuffix(part, "]") {
			name = part[:i]
			idx, _ = strconv.Atoi(part[i+1 : len(part)-1])
		}
		if n.Kind != yaml.MappingNode {
			return line
		}
		var val *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				line, val = n.Content[i].Line, n.Content[i+1]
				break
			}
		}
		if val == nil {
			return line
		}
		n = val
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}
