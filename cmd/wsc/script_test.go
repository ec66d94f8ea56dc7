package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/station"
)

// TestMain lets the test binary stand in for the wsc binary in the
// testscript suite (testscript.Main runs main's code when the binary is
// invoked as "wsc"); other tests run as usual.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"wsc": func() {
			defer exitOnPanic()
			os.Exit(run(os.Args[1:]))
		},
	})
}

// TestScripts runs the command-line contract suite in testdata/script:
// each command's exit code for success, a bad argument, a bad input and a
// failed check, and the shape of its JSON (docs/reason-codes.md). Real CA
// folders and SQLite files, made by wsc itself in the script's work folder.
//
// Commands added to testscript's set:
//
//	wsc-exit N ARGS...      run wsc ARGS, require exit status N
//	stdout-env VAR          set VAR to the last command's standard output (trimmed)
//	issue-device CA DB PASS SERIAL  issue a device certificate as the station does
//	                        (ca.Issue on the station database) and print its
//	                        serial as openssl prints it
//	json-keys FILE PATH...  FILE (or stdout) is JSON holding every PATH
//	json-eq FILE PATH VALUE the value at PATH is VALUE (strings bare, others as JSON)
//	json-len FILE PATH N    the array at PATH ("." for the top) has N elements
//
// A PATH is dot-separated: object keys, array indexes ("0"), "*" for every
// element of an array (which must not be empty) and "." for the top.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Cmds: withSignScriptCmds(map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"wsc-exit": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) < 1 {
					ts.Fatalf("usage: wsc-exit N ARGS...")
				}
				want, err := strconv.Atoi(args[0])
				if err != nil {
					ts.Fatalf("wsc-exit: %v", err)
				}
				got := 0
				if err := ts.Exec("wsc", args[1:]...); err != nil {
					var ee *exec.ExitError
					if !errors.As(err, &ee) {
						ts.Fatalf("wsc-exit: %v", err)
					}
					got = ee.ExitCode()
				}
				if got != want {
					ts.Fatalf("wsc %s: exit status %d, want %d", strings.Join(args[1:], " "), got, want)
				}
			},
			"stdout-env": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 {
					ts.Fatalf("usage: stdout-env VAR")
				}
				ts.Setenv(args[0], strings.TrimSpace(ts.ReadFile("stdout")))
			},
			"issue-device": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 4 {
					ts.Fatalf("usage: issue-device CA-DIR DB PASSFILE SERIAL")
				}
				ts.Stdout().Write([]byte(issueDevice(ts, ts.MkAbs(args[0]), ts.MkAbs(args[1]), ts.MkAbs(args[2]), args[3]) + "\n"))
			},
			"json-keys": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) < 2 {
					ts.Fatalf("usage: json-keys FILE PATH...")
				}
				doc := readJSON(ts, args[0])
				for _, p := range args[1:] {
					_, err := jsonAt(doc, p)
					if (err == nil) == neg {
						ts.Fatalf("json-keys %s %s: %v", args[0], p, orPresent(err))
					}
				}
			},
			"json-eq": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 3 {
					ts.Fatalf("usage: json-eq FILE PATH VALUE")
				}
				vs, err := jsonAt(readJSON(ts, args[0]), args[1])
				if err != nil {
					ts.Fatalf("json-eq: %v", err)
				}
				for _, v := range vs {
					got := ""
					if s, ok := v.(string); ok {
						got = s
					} else {
						b, _ := json.Marshal(v)
						got = string(b)
					}
					if (got == args[2]) == neg {
						ts.Fatalf("json-eq %s %s: got %s, want %s%s", args[0], args[1], got, map[bool]string{true: "anything but ", false: ""}[neg], args[2])
					}
				}
			},
			"json-len": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 3 {
					ts.Fatalf("usage: json-len FILE PATH N")
				}
				vs, err := jsonAt(readJSON(ts, args[0]), args[1])
				if err != nil {
					ts.Fatalf("json-len: %v", err)
				}
				for _, v := range vs {
					a, ok := v.([]any)
					if !ok {
						ts.Fatalf("json-len %s: %T is not an array (null is not an empty array)", args[1], v)
					}
					if strconv.Itoa(len(a)) != args[2] {
						ts.Fatalf("json-len %s: %d elements, want %s", args[1], len(a), args[2])
					}
				}
			},
		}),
	})
}

// issueDevice issues a certificate for a fresh P-256 key through the ca
// package on the station database, as the station does, and returns the
// certificate's serial as openssl prints it (computed here, independently
// of the code under test).
func issueDevice(ts *testscript.TestScript, caDir, dbPath, passFile, serial string) string {
	pass, err := ca.ReadPassphrase("file:" + passFile)
	if err != nil {
		ts.Fatalf("issue-device: %v", err)
	}
	st, err := db.Open(dbPath)
	if err != nil {
		ts.Fatalf("issue-device: %v", err)
	}
	defer st.Close()
	c, err := ca.Open(caDir, pass, ca.WithStore(station.CAStore(st)))
	if err != nil {
		ts.Fatalf("issue-device: %v", err)
	}
	defer c.Close()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		ts.Fatalf("issue-device: %v", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}}, key)
	if err != nil {
		ts.Fatalf("issue-device: %v", err)
	}
	chain, err := c.Issue(context.Background(), csr, ca.IssueRequest{DeviceSerial: serial, Validity: 30 * 24 * time.Hour})
	if err != nil {
		ts.Fatalf("issue-device: %v", err)
	}
	return strings.ToUpper(hex.EncodeToString(chain[0].SerialNumber.Bytes()))
}

func orPresent(err error) error {
	if err == nil {
		return errors.New("present, want absent")
	}
	return err
}

func readJSON(ts *testscript.TestScript, file string) any {
	var v any
	if err := json.Unmarshal([]byte(ts.ReadFile(file)), &v); err != nil {
		ts.Fatalf("%s is not JSON: %v", file, err)
	}
	return v
}

// jsonAt returns the values at a dot-separated path (see TestScripts).
func jsonAt(doc any, path string) ([]any, error) {
	cur := []any{doc}
	if path == "." {
		return cur, nil
	}
	for _, seg := range strings.Split(path, ".") {
		var next []any
		for _, v := range cur {
			switch x := v.(type) {
			case map[string]any:
				e, ok := x[seg]
				if !ok {
					return nil, fmt.Errorf("%s: no key %q", path, seg)
				}
				next = append(next, e)
			case []any:
				if seg == "*" {
					if len(x) == 0 {
						return nil, fmt.Errorf("%s: empty array at %q", path, seg)
					}
					next = append(next, x...)
					continue
				}
				i, err := strconv.Atoi(seg)
				if err != nil || i < 0 || i >= len(x) {
					return nil, fmt.Errorf("%s: no element %q in an array of %d", path, seg, len(x))
				}
				next = append(next, x[i])
			default:
				return nil, fmt.Errorf("%s: %q below a %T", path, seg, v)
			}
		}
		cur = next
	}
	return cur, nil
}
