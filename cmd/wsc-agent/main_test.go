package main

import (
	"flag"
	"io"
	"strings"
	"testing"
)

// TestTPMHandleFlags: handles and NV indices are configurable from the
// command line, in hex or decimal, and bad values are refused.
func TestTPMHandleFlags(t *testing.T) {
	var bf backendFlags
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	bf.register(fs)
	if err := fs.Parse([]string{"--idevid-handle", "0x81000020", "--iak-handle", "2164260897", "--nv-base", "0x01500100", "--nv-max-indices", "4"}); err != nil {
		t.Fatal(err)
	}
	if bf.cfg.IDevIDHandle != 0x81000020 || bf.cfg.IAKHandle != 0x81000021 || bf.cfg.NVBase != 0x01500100 || bf.cfg.NVMaxIndices != 4 {
		t.Fatalf("config %+v", bf.cfg)
	}
	if bf.cfg.SRKHandle != 0x81000001 {
		t.Fatalf("SRK default changed: %#x", bf.cfg.SRKHandle)
	}
	fs2 := flag.NewFlagSet("t", flag.ContinueOnError)
	fs2.SetOutput(io.Discard)
	var bf2 backendFlags
	bf2.register(fs2)
	if err := fs2.Parse([]string{"--nv-base", "nope"}); err == nil {
		t.Fatal("a non-numeric NV index was accepted")
	}
}

// TestUsage: no command is a usage error (exit 2); help is not.
func TestUsage(t *testing.T) {
	if code := run(nil, io.Discard, io.Discard); code != 2 {
		t.Fatalf("no arguments: exit %d, want 2", code)
	}
	if code := run([]string{"help"}, io.Discard, io.Discard); code != 0 {
		t.Fatalf("help: exit %d, want 0", code)
	}
	if code := run([]string{"frobnicate"}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("unknown command: exit %d, want 2", code)
	}
}

// TestExitCodes: a bad flag, a bad command, a missing argument and a bad
// backend URI are usage errors (2); a device that cannot be opened is an
// environment error (3); help is 0 and prints the command's description,
// arguments and flags.
func TestExitCodes(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		want   int
		stdout string
		stderr string
	}{
		{"bad flag", []string{"serve", "--bogus"}, 2, "", "see 'wsc-agent serve --help'"},
		{"bad flag value", []string{"info", "--nv-base", "nope"}, 2, "", "want a 32-bit number"},
		{"bad command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"missing serial", []string{"serve", "--tpm", "swtpm:unix:///nonexistent/tpm.sock"}, 2, "", "--serial is required"},
		{"sign without output", []string{"sign", "in.wasm"}, 2, "", "-o OUT.wasm"},
		{"two backends", []string{"info", "--tpm", "/dev/tpmrm0", "--se", "emulator:/x"}, 2, "", "only one of"},
		{"unknown tpm uri", []string{"info", "--tpm", "carrier-pigeon"}, 2, "", "unsupported tpm transport"},
		{"unknown latency profile", []string{"info", "--tpm", "swtpm:unix:///nonexistent", "--latency-profile", "slow"}, 2, "", "unknown profile"},
		{"missing tpm socket", []string{"info", "--tpm", "swtpm:unix:///nonexistent/tpm.sock"}, 2, "", "no such file"},
		{"unreachable tpm", []string{"info", "--tpm", "swtpm:tcp://127.0.0.1:1"}, 3, "", "wsc-agent:"},
		{"stray argument", []string{"info", "extra"}, 2, "", `unexpected argument "extra"`},
		{"serve --help", []string{"serve", "--help"}, 0, "Answer the station's requests", ""},
		{"help sign", []string{"help", "sign"}, 0, "Arguments:\n  IN.wasm", ""},
		{"info -h lists flags", []string{"info", "-h"}, 0, "--json\n      print JSON", ""},
		{"help of unknown command", []string{"help", "frobnicate"}, 2, "", "unknown command"},
		{"version flag", []string{"--version"}, 0, "wsc-agent ", ""},
		{"version json", []string{"version", "--json"}, 0, `"agent_version"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(tt.args, &out, &errOut)
			if code != tt.want || !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errOut.String(), tt.stderr) {
				t.Fatalf("wsc-agent %s: exit %d (want %d)\nstdout: %s\nstderr: %s", strings.Join(tt.args, " "), code, tt.want, out.String(), errOut.String())
			}
			if tt.want == 0 && tt.args[0] != "version" && tt.args[0] != "--version" && !strings.Contains(out.String(), "Flags:") {
				t.Fatalf("help without flags:\n%s", out.String())
			}
		})
	}
}
