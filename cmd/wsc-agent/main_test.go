package main

import (
	"flag"
	"io"
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
