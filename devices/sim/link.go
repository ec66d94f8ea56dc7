package sim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

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
}

// NewLink creates the two pseudo-terminals and starts relay between them.
// A nil relay copies faithfully. The slave sides are put in raw mode at once
// and kept open by the link, so that neither side sees echo, line editing or
// a hang-up while the other end is not open yet.
func NewLink(relay RelayFunc) (*Link, error) {
	l := &Link{}
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
	l.stop = relay(l.masters[0], l.masters[1])
	return l, nil
}

// Pull simulates pulling the cable: the relay stops and bytes no longer
// flow. It is the same as Close; it exists to make tests read as what they do.
func (l *Link) Pull() error { return l.Close() }

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
