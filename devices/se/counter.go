package se

import (
	"encoding/binary"
	"fmt"
)

// OpCounter is the Counter command: read or increment one of the chip's
// two monotonic counters.
const OpCounter Opcode = 0x24

// Counter command modes and limits (datasheet "Counter Command").
const (
	counterRead      = 0x00
	counterIncrement = 0x01
	// MaxCounter is the largest value a monotonic counter reaches
	// (2,097,151); incrementing beyond it fails.
	MaxCounter = 2097151
	// NumCounters is the number of monotonic counters (0 and 1).
	NumCounters = 2
)

// Counter reads monotonic counter id (0 or 1).
func (c *Chip) Counter(id int) (uint32, error) {
	return c.counter(counterRead, id)
}

// IncrementCounter adds one to monotonic counter id and returns the new
// value. The chip writes the counter before it answers: a power cut after
// the command leaves the counter advanced.
func (c *Chip) IncrementCounter(id int) (uint32, error) {
	return c.counter(counterIncrement, id)
}

func (c *Chip) counter(mode uint8, id int) (uint32, error) {
	if id < 0 || id >= NumCounters {
		return 0, fmt.Errorf("counter %d: the chip has counters 0 and 1", id)
	}
	out, err := c.Execute(OpCounter, mode, uint16(id), nil, 4)
	if err != nil {
		return 0, fmt.Errorf("counter %d: %w", id, err)
	}
	return binary.LittleEndian.Uint32(out), nil
}

// counterCmd emulates Counter: the config zone must be locked; the value is
// returned little-endian in 4 bytes; an increment is persisted before the
// response, and fails at MaxCounter.
func (e *Emulator) counterCmd(mode uint8, p2 uint16, in []byte) ([]byte, Status) {
	if len(in) != 0 || p2 >= NumCounters || (mode != counterRead && mode != counterIncrement) {
		return nil, StatusParse
	}
	if !e.cfg().ConfigLocked() {
		return nil, StatusExecution
	}
	if mode == counterIncrement {
		if e.counters[p2] >= MaxCounter {
			return nil, StatusExecution
		}
		e.counters[p2]++
		if err := e.persist(); err != nil {
			e.counters[p2]--
			return nil, StatusExecution
		}
	}
	return binary.LittleEndian.AppendUint32(nil, e.counters[p2]), StatusOK
}
