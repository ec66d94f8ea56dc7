package tpm

import (
	"bytes"
	"errors"
	"testing"
)

// TestReset: after Reset the device keys and the chain are gone, and
// CreateKeys makes new, different keys.
func TestReset(t *testing.T) {
	d, _ := newDevice(t, DefaultConfig())
	nonce := bytes.Repeat([]byte{7}, 32)
	ev1, err := d.CreateKeys(nonce)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteChain(makeChain(t, 2, 3)); err != nil {
		t.Fatal(err)
	}
	if err := d.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadChain(); !errors.Is(err, ErrNoChain) {
		t.Fatalf("ReadChain after Reset: %v, want ErrNoChain", err)
	}
	ev2, err := d.CreateKeys(nonce)
	if err != nil {
		t.Fatal(err)
	}
	if !ev2.Created || bytes.Equal(ev1.IDevIDPublic, ev2.IDevIDPublic) {
		t.Fatalf("keys after Reset: created=%v, same key=%v", ev2.Created, bytes.Equal(ev1.IDevIDPublic, ev2.IDevIDPublic))
	}
	// Reset of an empty device is not an error.
	if err := d.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := d.Reset(); err != nil {
		t.Fatalf("second Reset: %v", err)
	}
}
