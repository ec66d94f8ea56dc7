package se

import (
	"errors"
	"path/filepath"
	"testing"
)

// TestMonotonicCounter: the Counter command reads and increments each of
// the two counters independently, refuses before the config lock and past
// MaxCounter, and the value survives reopening the emulator's state.
func TestMonotonicCounter(t *testing.T) {
	_, blank := newBlank(t, nil)
	if _, err := blank.Counter(0); !errors.Is(err, StatusExecution) {
		t.Fatalf("counter before the config lock: %v", err)
	}
	state := filepath.Join(t.TempDir(), "chip.json")
	e, err := OpenEmulator(state)
	if err != nil {
		t.Fatal(err)
	}
	c := New(e, DefaultAddress)
	if _, err := c.Personalize(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Counter(0); err != nil || v != 0 {
		t.Fatalf("fresh counter = %d, %v", v, err)
	}
	for want := uint32(1); want <= 3; want++ {
		if v, err := c.IncrementCounter(0); err != nil || v != want {
			t.Fatalf("increment = %d, %v; want %d", v, err, want)
		}
	}
	if v, err := c.Counter(1); err != nil || v != 0 {
		t.Fatalf("counter 1 moved with counter 0: %d, %v", v, err)
	}
	if _, err := c.Counter(2); err == nil {
		t.Fatal("counter 2 accepted")
	}
	if e.Stats().Commands[OpCounter] != 5 {
		t.Fatalf("%d Counter commands on the bus, want 5", e.Stats().Commands[OpCounter])
	}
	e2, err := OpenEmulator(state)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := New(e2, DefaultAddress).Counter(0); err != nil || v != 3 {
		t.Fatalf("after reopen: %d, %v", v, err)
	}
	e2.mu.Lock()
	e2.counters[1] = MaxCounter
	e2.mu.Unlock()
	if _, err := New(e2, DefaultAddress).IncrementCounter(1); !errors.Is(err, StatusExecution) {
		t.Fatalf("increment past the maximum: %v", err)
	}
}
