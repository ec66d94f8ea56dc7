package pkcs11

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"

	"go.step.sm/crypto/kms/uri"
)

// URI is a parsed RFC 7512 PKCS#11 URI, with the attributes wsc uses:
//
//	pkcs11:token=wsc;object=device?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/wsc/pin
//
// Path attributes (separated by ';'): token (label), serial (token serial),
// slot-id, object (key and certificate label prefix, default "wsc-device"),
// id. Query attributes (separated by '&'): module-path, pin-source
// (file:PATH or a plain path), pin-value (tests only: the PIN is in the
// command line). module-path is also accepted as a path attribute, as some
// tools write it there. Values are percent-decoded.
type URI struct {
	ModulePath string
	Token      string
	Serial     string
	SlotID     string
	Object     string
	ID         []byte
	PinSource  string
	pinValue   string
}

// DefaultObject is the label of the device key and the prefix of the chain's
// certificate labels when the URI names no object.
const DefaultObject = "wsc-device"

// ParseURI parses a pkcs11: URI with go.step.sm/crypto/kms/uri, the one
// PKCS#11 URI parser wsc uses, and checks wsc's rules: only known
// attributes, a module-path, and a token named by token, serial or slot-id.
// Errors never repeat the URI (it may hold a pin-value).
func ParseURI(s string) (*URI, error) {
	if !uri.HasScheme("pkcs11", s) {
		return nil, errors.New(`pkcs11 uri: must start with "pkcs11:"`)
	}
	p, err := uri.ParseWithScheme("pkcs11", s)
	if err != nil {
		// The parser's message repeats the whole URI, which may hold a PIN.
		return nil, errors.New("pkcs11 uri: malformed (check the ';' and '&' separators and %-escapes)")
	}
	u := &URI{Object: DefaultObject}
	set := func(k, val string) error {
		switch k {
		case "module-path":
			u.ModulePath = val
		case "token":
			u.Token = val
		case "serial":
			u.Serial = val
		case "slot-id":
			u.SlotID = val
		case "object":
			u.Object = val
		case "id":
			u.ID = []byte(val)
		case "pin-source":
			u.PinSource = strings.TrimPrefix(val, "file:")
		case "pin-value":
			u.pinValue = val
		case "type", "manufacturer", "model", "library-description", "library-manufacturer", "library-version", "slot-description", "slot-manufacturer", "module-name":
			// Accepted and not used.
		default:
			return fmt.Errorf("pkcs11 uri: unknown attribute %q", k)
		}
		return nil
	}
	// Path attributes first, then the query, as RFC 7512 orders them.
	for _, vals := range []url.Values{p.Values, p.URL.Query()} {
		for _, k := range slices.Sorted(maps.Keys(vals)) {
			if err := set(k, vals.Get(k)); err != nil {
				return nil, err
			}
		}
	}
	if u.ModulePath == "" {
		return nil, errors.New("pkcs11 uri: module-path is required")
	}
	if u.Token == "" && u.Serial == "" && u.SlotID == "" {
		return nil, errors.New("pkcs11 uri: name the token (token=, serial= or slot-id=)")
	}
	return u, nil
}

// PIN returns the user PIN: pin-value, or the first line of the pin-source
// file. It is never part of String or of an error.
func (u *URI) PIN() (string, error) {
	if u.pinValue != "" {
		return u.pinValue, nil
	}
	if u.PinSource == "" {
		return "", errors.New("pkcs11 uri: no pin-source or pin-value")
	}
	b, err := os.ReadFile(u.PinSource)
	if err != nil {
		return "", fmt.Errorf("pkcs11 pin-source: %w", err)
	}
	pin, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimRight(pin, "\r"), nil
}

// String returns the URI without the PIN.
func (u *URI) String() string {
	var b strings.Builder
	b.WriteString("pkcs11:")
	var parts []string
	if u.Token != "" {
		parts = append(parts, "token="+url.PathEscape(u.Token))
	}
	if u.Serial != "" {
		parts = append(parts, "serial="+url.PathEscape(u.Serial))
	}
	if u.SlotID != "" {
		parts = append(parts, "slot-id="+u.SlotID)
	}
	parts = append(parts, "object="+url.PathEscape(u.Object))
	b.WriteString(strings.Join(parts, ";"))
	b.WriteString("?module-path=" + url.PathEscape(u.ModulePath))
	if u.PinSource != "" {
		b.WriteString("&pin-source=file:" + url.PathEscape(u.PinSource))
	}
	if u.pinValue != "" {
		b.WriteString("&pin-value=REDACTED")
	}
	return b.String()
}
