package sim

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/wsc-project/wsc/devices/proto"
)

// ErrUnknownStep reports a fault point that is not a provisioning step the
// injector knows.
var ErrUnknownStep = errors.New("unknown fault point")

// faultPoints maps the station's provisioning steps (station.Step names) to
// the request that starts them on the wire. A fault "at install" answers the
// station's InstallChain request with a device error instead of passing it to
// the agent.
var faultPoints = map[string]proto.MsgType{
	"hello":    proto.MsgHello,
	"ek":       proto.MsgGetEK,
	"keys":     proto.MsgCreateKeys,
	"activate": proto.MsgActivateCredential,
	"install":  proto.MsgInstallChain,
	"readback": proto.MsgReadChain,
	"eol":      proto.MsgSignDigest,
	"lock":     proto.MsgLock,
}

// FaultPoints lists the names a fault can be injected at, sorted.
func FaultPoints() []string {
	out := make([]string, 0, len(faultPoints))
	for k := range faultPoints {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Injector sits on a simulated cable between the station and the relay to
// the agent. Unarmed it passes every frame unchanged. Armed at a step (Arm),
// it answers the next request of that step with an error reply, as a chip
// that failed the command would, and the agent never sees the request. Each
// armed fault fires once; Hits counts the fired faults per point.
type Injector struct {
	mu    sync.Mutex
	armed map[proto.MsgType]string
	hits  map[string]int
}

// NewInjector returns an unarmed injector.
func NewInjector() *Injector {
	return &Injector{armed: map[proto.MsgType]string{}, hits: map[string]int{}}
}

// Arm makes the next request at point fail once. point is a step name (see
// FaultPoints).
func (in *Injector) Arm(point string) error {
	t, ok := faultPoints[strings.ToLower(point)]
	if !ok {
		return fmt.Errorf("%w %q (want one of %s)", ErrUnknownStep, point, strings.Join(FaultPoints(), ", "))
	}
	in.mu.Lock()
	in.armed[t] = strings.ToLower(point)
	in.mu.Unlock()
	return nil
}

// Armed lists the points armed and not yet fired, sorted.
func (in *Injector) Armed() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []string
	for _, p := range in.armed {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Hits returns how many faults fired at each point.
func (in *Injector) Hits() map[string]int {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make(map[string]int, len(in.hits))
	for k, v := range in.hits {
		out[k] = v
	}
	return out
}

// fire reports whether a request of type t is to fail now, and disarms it.
func (in *Injector) fire(t proto.MsgType) (string, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	p, ok := in.armed[t]
	if ok {
		delete(in.armed, t)
		in.hits[p]++
	}
	return p, ok
}

// Wrap returns a relay that runs inner with the injector on the station's
// side (a is the station's end, as NewLink passes it).
func (in *Injector) Wrap(inner RelayFunc) RelayFunc {
	if inner == nil {
		inner = CopyRelay
	}
	return func(a, b io.ReadWriter) func() {
		return inner(&injectWire{in: in, station: a}, b)
	}
}

// injectWire is the station's end of the cable as the inner relay sees it:
// Read yields the station's frames minus the ones a fault swallowed; Write
// passes the agent's bytes to the station. Writes are serialised with the
// error replies the injector sends, so that a reply never lands inside
// another frame.
type injectWire struct {
	in      *Injector
	station io.ReadWriter

	wmu sync.Mutex

	raw     [4096]byte
	frame   []byte // bytes of the frame being received (after its delimiter)
	out     []byte // bytes ready to hand to the relay
	swallow uint32 // request id of a swallowed chunked request
	hasSw   bool
}

func (w *injectWire) Write(p []byte) (int, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return w.station.Write(p)
}

func (w *injectWire) Read(p []byte) (int, error) {
	for len(w.out) == 0 {
		n, err := w.station.Read(w.raw[:])
		for _, c := range w.raw[:n] {
			w.frame = append(w.frame, c)
			if c == proto.Delimiter {
				w.endFrame()
			} else if len(w.frame) > proto.MaxFrameSize+16 {
				// Not a frame the station would send: pass it on as is.
				w.out = append(w.out, w.frame...)
				w.frame = w.frame[:0]
			}
		}
		if err != nil {
			if len(w.out) > 0 {
				break
			}
			return 0, err
		}
	}
	n := copy(p, w.out)
	w.out = w.out[n:]
	return n, nil
}

// endFrame decides about the frame that just ended at a delimiter.
func (w *injectWire) endFrame() {
	fr := w.frame
	w.frame = w.frame[:0]
	if len(fr) > 1 {
		f, err := proto.DecodeFrame(fr[:len(fr)-1])
		if err == nil && !f.Response() {
			if w.hasSw && f.ID == w.swallow {
				if !f.More() {
					w.hasSw = false
				}
				return
			}
			if f.Chunk() == 0 {
				if point, ok := w.in.fire(f.Type); ok {
					if f.More() {
						w.swallow, w.hasSw = f.ID, true
					}
					w.reply(f, point)
					return
				}
			}
		}
	}
	w.out = append(w.out, fr...)
}

// reply answers the swallowed request f with a device error.
func (w *injectWire) reply(f proto.Frame, point string) {
	payload, err := proto.Marshal(proto.ErrorResponse{Code: uint16(proto.ErrDevice),
		Message: fmt.Sprintf("fault injected at %s by wsc sim", point)})
	if err != nil {
		return
	}
	b, err := proto.EncodeFrame([]byte{proto.Delimiter}, proto.Frame{Version: f.Version, Flags: proto.FlagResponse, ID: f.ID, Type: proto.MsgError, Payload: payload})
	if err != nil {
		return
	}
	_, _ = w.Write(b)
}
