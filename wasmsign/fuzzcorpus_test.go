package wasmsign

import (
	"bytes"
	"errors"
	"strconv"
)

// quoteBytes writes b as a Go string literal, as the fuzz corpus format wants.
func quoteBytes(b []byte) string { return strconv.Quote(string(b)) }

// parseFuzzBytes reads a one-value "go test fuzz v1" file holding []byte("...").
func parseFuzzBytes(file []byte) ([]byte, error) {
	lines := bytes.SplitN(bytes.TrimSpace(file), []byte("\n"), 2)
	if len(lines) != 2 || string(lines[0]) != "go test fuzz v1" {
		return nil, errors.New("not a fuzz corpus file")
	}
	v := bytes.TrimSpace(lines[1])
	if !bytes.HasPrefix(v, []byte("[]byte(")) || !bytes.HasSuffix(v, []byte(")")) {
		return nil, errors.New("not a []byte value")
	}
	s, err := strconv.Unquote(string(v[len("[]byte(") : len(v)-1]))
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}
