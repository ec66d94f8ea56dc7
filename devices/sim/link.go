package sim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/creack/pty"
	"golang.org/x/term"
)

// RelayFunc copies bytes both ways between a and b until stop is called.
// The default relay copies faithfully; tests pass a fault-injecting relay
// (devices/proto.Relay) to corrupt, drop, duplicate or delay bytes.
type RelayFunc func(a, b io.ReadWriter) (stop func())

// Link is a simulated serial cable: two real pseudo-terminals whose master
// sides are joined by a relay. The station opens StationPath and the agent
// opens AgentPath, both with go.bug.st/serial, exactly as they would open a
// USB serial adapter.
type Link struct {
	StationPath string
	AgentPath   string

	masters [2]*os.File
	slaves  [2]*os.File
	stop    func()
	once    sync.Once

	baud      int
	connected atomic.Bool
	// lost counts the bytes written while the cable was pulled.
	lost atomic.Int64
}

// LinkOption configures a Link.
type LinkOption func(*Link)

// WithBaud paces every byte as a UART at this speed would (10 bits per byte:
// start, 8 data, stop), so transfer times are those of a real cable.
func WithBaud(baud int) LinkOption { return func(l *Link) { l.baud = baud } }

// NewLink creates the two pseudo-terminals and starts relay between them.
// A nil relay copies faithfully. The slave sides are put in raw mode at once
// and kept open by the link, so that neither side sees echo, line editing or
// a hang-up while the other end is not open yet.
func NewLink(relay RelayFunc, opts ...LinkOption) (*Link, error) {
	l := &Link{}
	l.connected.Store(true)
	for _, o := range opts {
		o(l)
	}
	for i := range 2 {
		m, s, err := pty.Open()
		if err != nil {
			l.closeFiles()
			return nil, fmt.Errorf("open pseudo-terminal: %w", err)
		}
		l.masters[i], l.slaves[i] = m, s
		if _, err := term.MakeRaw(int(s.Fd())); err != nil {
			l.closeFiles()
			return nil, fmt.Errorf("raw mode on %s: %w", s.Name(), err)
		}
	}
	l.StationPath = l.slaves[0].Name()
	l.AgentPath = l.slaves[1].Name()
	if relay == nil {
		relay = CopyRelay
	}
	l.stop = relay(&wire{l: l, f: l.masters[0]}, &wire{l: l, f: l.masters[1]})
	return l, nil
}

// SetConnected plugs (true) or pulls (false) the cable. While pulled, bytes
// either side writes are lost, as on a real unplugged line; the ports stay
// open, as a USB serial adapter on the station side stays present.
func (l *Link) SetConnected(on bool) { l.connected.Store(on) }

// Connected reports whether the cable is plugged.
func (l *Link) Connected() bool { return l.connected.Load() }

// Lost returns how many bytes either side wrote while the cable was
// pulled: a test waits for it to grow to know that the station tried the
// line while it was pulled (and so noticed the device gone), instead of
// sleeping for a guessed time.
func (l *Link) Lost() int64 { return l.lost.Load() }

// wire is one end of the cable as the relay sees it: writes are paced to the
// baud rate and dropped while the cable is pulled.
type wire struct {
	l *Link
	f *os.File
}

func (w *wire) Read(p []byte) (int, error) { return w.f.Read(p) }

func (w *wire) Write(p []byte) (int, error) {
	if !w.l.connected.Load() {
		w.l.lost.Add(int64(len(p)))
		return len(p), nil
	}
	if w.l.baud > 0 {
		time.Sleep(time.Duration(len(p)) * 10 * time.Second / time.Duration(w.l.baud))
	}
	return w.f.Write(p)
}

// Close stops the relay and closes both pseudo-terminals.
func (l *Link) Close() error {
	var err error
	l.once.Do(func() {
		err = l.closeFiles()
		if l.stop != nil {
			l.stop()
		}
	})
	return err
}

func (l *Link) closeFiles() error {
	var errs []error
	for i := range 2 {
		for _, f := range []*os.File{l.masters[i], l.slaves[i]} {
			if f != nil {
				if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// CopyRelay is a faithful relay: what one side writes, the other reads.
func CopyRelay(a, b io.ReadWriter) (stop func()) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(a, b) }()
	go func() { defer wg.Done(); _, _ = io.Copy(b, a) }()
	// The copies end when the link closes the masters (read error).
	return func() { wg.Wait() }
}
