package proto

import (
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Faults describes how Relay damages the bytes it copies. Rates are
// independent probabilities per byte.
type Faults struct {
	BitFlipRate   float64       // flip one random bit of the byte
	DropRate      float64       // lose the byte
	DuplicateRate float64       // deliver the byte twice
	Delay         time.Duration // added latency of every byte (order is kept)
	Seed          int64         // makes a run reproducible
	// Counts, when set, counts the faults injected at each point, so a
	// test can show that its faults landed.
	Counts *FaultCounts
}

// FaultCounts counts the faults Relay injected, per kind (the named
// injection points: "flip", "drop", "duplicate").
type FaultCounts struct {
	Flipped, Dropped, Duplicated atomic.Int64
}

// String renders the counts by point name.
func (c *FaultCounts) String() string {
	return fmt.Sprintf("flip=%d drop=%d duplicate=%d", c.Flipped.Load(), c.Dropped.Load(), c.Duplicated.Load())
}

// Relay copies bytes from a to b and from b to a, damaging them as f says:
// a stand-in for a noisy serial cable between two real byte streams (for
// example two pseudo-terminals), for tests and demos. It is a test fixture,
// not part of the protocol.
//
// stop ends the relay: no new Write starts after it returns. It interrupts
// readers that support SetReadDeadline (a pollable os.File, net.Conn) and
// waits up to a second for the copying goroutines; a goroutine blocked in a
// Read that cannot be interrupted exits when that Read returns, discarding
// what it read.
func Relay(a, b io.ReadWriter, f Faults) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go relayDir(&wg, quit, a, b, f, 1)
	go relayDir(&wg, quit, b, a, f, 2)
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			type deadliner interface{ SetReadDeadline(time.Time) error }
			for _, e := range []io.ReadWriter{a, b} {
				if d, ok := e.(deadliner); ok {
					_ = d.SetReadDeadline(time.Now())
				}
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
				for _, e := range []io.ReadWriter{a, b} {
					if d, ok := e.(deadliner); ok {
						_ = d.SetReadDeadline(time.Time{})
					}
				}
			case <-time.After(time.Second):
			}
		})
	}
}

type delayed struct {
	due  time.Time
	data []byte
}

func relayDir(wg *sync.WaitGroup, quit chan struct{}, src io.Reader, dst io.Writer, f Faults, stream uint64) {
	defer wg.Done()
	rng := rand.New(rand.NewPCG(uint64(f.Seed), stream))
	write := func(p []byte) bool {
		select {
		case <-quit:
			return false
		default:
		}
		_, err := dst.Write(p)
		return err == nil
	}

	var queue chan delayed
	var qwg sync.WaitGroup
	if f.Delay > 0 {
		queue = make(chan delayed, 1024)
		qwg.Add(1)
		go func() {
			defer qwg.Done()
			for d := range queue {
				select {
				case <-time.After(time.Until(d.due)):
				case <-quit:
					continue // drain
				}
				write(d.data)
			}
		}()
		defer func() {
			close(queue)
			qwg.Wait()
		}()
	}

	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			out := make([]byte, 0, n+n/8+1)
			for _, c := range buf[:n] {
				if f.DropRate > 0 && rng.Float64() < f.DropRate {
					if f.Counts != nil {
						f.Counts.Dropped.Add(1)
					}
					continue
				}
				if f.BitFlipRate > 0 && rng.Float64() < f.BitFlipRate {
					c ^= 1 << rng.IntN(8)
					if f.Counts != nil {
						f.Counts.Flipped.Add(1)
					}
				}
				out = append(out, c)
				if f.DuplicateRate > 0 && rng.Float64() < f.DuplicateRate {
					out = append(out, c)
					if f.Counts != nil {
						f.Counts.Duplicated.Add(1)
					}
				}
			}
			if queue != nil {
				select {
				case queue <- delayed{due: time.Now().Add(f.Delay), data: out}:
				case <-quit:
					return
				}
			} else if !write(out) {
				return
			}
		}
		if err != nil {
			return
		}
		select {
		case <-quit:
			return
		default:
		}
	}
}
