package sim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ControlSocket is the name of a running simulated bench's control socket
// in its folder (wsc sim pull/plug/fail talk to it).
const ControlSocket = "sim.sock"

// ErrNoBench reports that no simulated bench answers on a control socket.
var ErrNoBench = errors.New("no simulated bench is running there")

// maxControlLine bounds one control request.
const maxControlLine = 256

// Control serves a bench's control socket: one request line per
// connection, one reply line. N is a slot number (1..slots); with as many
// slots as devices, slot N holds device N. Requests:
//
//	pull N          unplug the cable of the device on slot N (bytes are lost, the port stays)
//	plug N          plug it back
//	fail N STEP     make the next request at STEP of the device on slot N fail once
//	next N          replace the device on slot N by the next fresh device
//	status          one line per slot: number, serial, kind, port, cable, bytes lost while pulled, armed faults
//
// Replies start with "ok" or "error:". The socket is created with mode 0600:
// only the user who runs the bench can pull its cables.
type Control struct {
	bench *Bench
	ln    net.Listener
	wg    sync.WaitGroup
	once  sync.Once

	mu       sync.Mutex
	slotDir  string
	slots    []int // device index on each slot
	nextFree int   // the next device never put on a slot
}

// ControlOption configures a Control.
type ControlOption func(*Control)

// WithSlots puts the bench's devices on n slots: slot K is the link
// dir/slot-K to the station end of its device's cable (SlotPort), slot K
// starts with device K, and "next K" re-points the link to the next device
// not used yet — as an operator takes a finished board off a fixture and
// puts the next one on. n must not exceed the number of devices.
func WithSlots(dir string, n int) ControlOption {
	return func(c *Control) { c.slotDir, c.slots = dir, make([]int, n) }
}

// SlotPort is the path of slot k's link in a rack folder.
func SlotPort(dir string, k int) string { return filepath.Join(dir, fmt.Sprintf("slot-%d", k)) }

// ServeControl listens on path (a Unix socket; a stale socket file left by
// a bench that died is replaced) and serves requests until Close.
func ServeControl(b *Bench, path string, opts ...ControlOption) (*Control, error) {
	c := &Control{bench: b}
	for _, o := range opts {
		o(c)
	}
	if c.slots == nil {
		c.slots = make([]int, len(b.Devices))
	}
	if len(c.slots) > len(b.Devices) || len(c.slots) == 0 {
		return nil, fmt.Errorf("simulated bench: %d slots for %d devices", len(c.slots), len(b.Devices))
	}
	for i := range c.slots {
		c.slots[i] = i
		if c.slotDir != "" {
			if err := c.link(i+1, b.Devices[i]); err != nil {
				return nil, err
			}
		}
	}
	c.nextFree = len(c.slots)
	if _, err := os.Stat(path); err == nil {
		if c, derr := net.DialTimeout("unix", path, time.Second); derr == nil {
			_ = c.Close()
			return nil, fmt.Errorf("control socket %s: another simulated bench is running there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale control socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	c.ln = ln
	c.wg.Add(1)
	go c.serve()
	return c, nil
}

func (c *Control) serve() {
	defer c.wg.Done()
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			r := bufio.NewReader(&limitedReader{r: conn, n: maxControlLine})
			line, err := r.ReadString('\n')
			if err != nil && line == "" {
				return
			}
			reply, herr := c.Handle(line)
			if herr != nil {
				reply = "error: " + herr.Error()
			} else {
				reply = "ok" + prefixed(reply)
			}
			_, _ = fmt.Fprintln(conn, strings.ReplaceAll(reply, "\n", "\n  "))
		}()
	}
}

func prefixed(s string) string {
	if s == "" {
		return ""
	}
	return " " + s
}

type limitedReader struct {
	r interface{ Read([]byte) (int, error) }
	n int
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("request too long")
	}
	if len(p) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= n
	return n, err
}

// Handle runs one request line and returns the reply text.
func (c *Control) Handle(line string) (string, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return "", errors.New("empty request (want pull N, plug N, fail N STEP or status)")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	device := func() (*Device, int, error) {
		if len(f) < 2 {
			return nil, 0, fmt.Errorf("%s needs a slot number", f[0])
		}
		n, err := strconv.Atoi(f[1])
		if err != nil || n < 1 || n > len(c.slots) {
			return nil, 0, fmt.Errorf("no slot %q on this bench (slots 1 to %d)", f[1], len(c.slots))
		}
		return c.bench.Devices[c.slots[n-1]], n, nil
	}
	switch f[0] {
	case "pull", "plug":
		d, n, err := device()
		if err != nil {
			return "", err
		}
		d.Link.SetConnected(f[0] == "plug")
		if f[0] == "plug" {
			return fmt.Sprintf("device %d (%s) plugged in", n, d.Serial), nil
		}
		return fmt.Sprintf("device %d (%s) pulled", n, d.Serial), nil
	case "fail":
		d, n, err := device()
		if err != nil {
			return "", err
		}
		if len(f) < 3 {
			return "", fmt.Errorf("fail needs a step (one of %s)", strings.Join(FaultPoints(), ", "))
		}
		if d.Faults == nil {
			return "", errors.New("this bench was started without fault injection")
		}
		if err := d.Faults.Arm(f[2]); err != nil {
			return "", err
		}
		return fmt.Sprintf("device %d (%s) will fail its next %s request", n, d.Serial, strings.ToLower(f[2])), nil
	case "next":
		_, n, err := device()
		if err != nil {
			return "", err
		}
		if c.slotDir == "" {
			return "", errors.New("this bench has one device per slot (start it with more devices than slots)")
		}
		if c.nextFree >= len(c.bench.Devices) {
			return "", fmt.Errorf("no fresh device left: all %d are used", len(c.bench.Devices))
		}
		d := c.bench.Devices[c.nextFree]
		if err := c.link(n, d); err != nil {
			return "", err
		}
		c.slots[n-1] = c.nextFree
		c.nextFree++
		return fmt.Sprintf("slot %d now holds %s (%d fresh devices left)", n, d.Serial, len(c.bench.Devices)-c.nextFree), nil
	case "status":
		var b strings.Builder
		for i, di := range c.slots {
			d := c.bench.Devices[di]
			cable := "plugged"
			if !d.Link.Connected() {
				cable = "pulled"
			}
			fmt.Fprintf(&b, "\n%d %s %s %s %s lost=%d", i+1, d.Serial, d.Kind, d.Port, cable, d.Link.Lost())
			if d.Faults != nil {
				if a := d.Faults.Armed(); len(a) > 0 {
					fmt.Fprintf(&b, " fail-at=%s", strings.Join(a, ","))
				}
			}
		}
		return fmt.Sprintf("%d slots, %d fresh devices left%s", len(c.slots), len(c.bench.Devices)-c.nextFree, b.String()), nil
	}
	return "", fmt.Errorf("unknown request %q (want pull N, plug N, fail N STEP or status)", f[0])
}

// link points slot k's link at device d's port, atomically (a new link
// renamed over the old one).
func (c *Control) link(k int, d *Device) error {
	path := SlotPort(c.slotDir, k)
	tmp := path + ".new"
	_ = os.Remove(tmp)
	if err := os.Symlink(d.Port, tmp); err != nil {
		return fmt.Errorf("slot %d: %w", k, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("slot %d: %w", k, err)
	}
	return nil
}

// Close stops serving and removes the socket.
func (c *Control) Close() error {
	var err error
	c.once.Do(func() {
		err = c.ln.Close()
		c.wg.Wait()
	})
	return err
}

// SendControl sends one request to the bench whose control socket is path
// and returns its reply (without the "ok" prefix). An "error:" reply is
// returned as an error.
func SendControl(ctx context.Context, path, request string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return "", fmt.Errorf("%w (%s): start one with wsc sim, or pass its --dir: %v", ErrNoBench, path, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	}
	if _, err := fmt.Fprintln(conn, request); err != nil {
		return "", fmt.Errorf("control request: %w", err)
	}
	var b strings.Builder
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(sc.Text())
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("control reply: %w", err)
	}
	reply := b.String()
	switch {
	case strings.HasPrefix(reply, "error: "):
		return "", errors.New(strings.TrimPrefix(reply, "error: "))
	case reply == "ok":
		return "", nil
	case strings.HasPrefix(reply, "ok "):
		return strings.TrimPrefix(reply, "ok "), nil
	}
	return "", fmt.Errorf("control reply not understood: %q", reply)
}
