// Package label prints a device label after the device passed: ZPL II for
// a Zebra-compatible printer on TCP port 9100 (or into a folder), and a PNG
// preview of the same label. The label carries the device serial, the work
// order, the date and a QR code of the serial and the certificate's SHA-256
// fingerprint, so that a scan of the board ties it to its certificate.
//
// A label that cannot be printed never fails the device: the caller shows
// the error on the slot's card (see station.BenchConfig.AfterPass).
package label

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"
)

// Config is the station config's label: section.
type Config struct {
	// Printer is host[:port] of a ZPL printer (port 9100 when omitted).
	Printer string `yaml:"printer"`
	// Dir is a folder where each label's ZPL and PNG preview are written
	// (<serial>.zpl, <serial>.png). With Printer, the PNG preview is
	// written here too.
	Dir string `yaml:"dir"`
	// Timeout bounds the connection to the printer (default 3 s).
	Timeout time.Duration `yaml:"timeout"`
}

// Check reports a config the station cannot use.
func (c Config) Check() error {
	if c.Printer == "" && c.Dir == "" {
		return errors.New("label: give a printer (host:9100) or a dir, or leave label out")
	}
	if c.Timeout < 0 {
		return errors.New("label.timeout: negative")
	}
	return nil
}

// Label is what one label says.
type Label struct {
	Serial    string
	WorkOrder string
	Date      time.Time
	// Fingerprint is the hex SHA-256 of the device certificate (DER).
	Fingerprint string
}

// Fingerprint returns the hex SHA-256 of a certificate's DER.
func Fingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// QRText is the QR code's content: the serial and the certificate
// fingerprint, one per line.
func (l Label) QRText() string {
	return "SN:" + l.Serial + "\nSHA256:" + l.Fingerprint
}

// zplSafe keeps text that a device chose from being read as ZPL commands
// (^ and ~ start commands; control characters end fields).
func zplSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '^' || r == '~' || r < 0x20 || r == 0x7f:
			return '?'
		}
		return r
	}, s)
}

// ZPL renders the label in ZPL II for a 2×1 inch label at 203 dpi.
func (l Label) ZPL() []byte {
	var b bytes.Buffer
	b.WriteString("^XA\n^CI28\n")
	fmt.Fprintf(&b, "^FO20,20^A0N,30,30^FDSN %s^FS\n", zplSafe(l.Serial))
	fmt.Fprintf(&b, "^FO20,60^A0N,22,22^FDWO %s^FS\n", zplSafe(l.WorkOrder))
	fmt.Fprintf(&b, "^FO20,90^A0N,22,22^FD%s^FS\n", l.Date.UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "^FO20,120^A0N,18,18^FD%s^FS\n", zplSafe(l.Fingerprint[:min(16, len(l.Fingerprint))]))
	// QR code, model 2, magnification 3, error correction M; the field
	// data's "MA," prefix is the mode (automatic) and correction level.
	fmt.Fprintf(&b, "^FO250,10^BQN,2,3^FDMA,%s^FS\n", zplSafe(strings.ReplaceAll(l.QRText(), "\n", " ")))
	b.WriteString("^XZ\n")
	return b.Bytes()
}

// PNG renders a preview of the label: the QR code (with the same content as
// the ZPL's, lines kept) and the serial, work order and date in a small
// pixel font.
func (l Label) PNG() ([]byte, error) {
	q, err := qrcode.New(l.QRText(), qrcode.Medium)
	if err != nil {
		return nil, fmt.Errorf("label QR code: %w", err)
	}
	// A whole number of pixels per module keeps every module square.
	qimg := q.Image(-6)
	qb := qimg.Bounds()
	qs := qb.Dx()
	const scale = 3
	lines := []string{"SN " + l.Serial, "WO " + l.WorkOrder, l.Date.UTC().Format("2006-01-02")}
	textW := 0
	for _, s := range lines {
		textW = max(textW, len([]rune(s))*4*scale)
	}
	w, h := qs+16+textW+16, max(qs, 3*8*scale+24)
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	for y := qb.Min.Y; y < qb.Max.Y; y++ {
		for x := qb.Min.X; x < qb.Max.X; x++ {
			img.Set(x-qb.Min.X, y-qb.Min.Y, qimg.At(x, y))
		}
	}
	for i, s := range lines {
		drawText(img, qs+16, 24+i*8*scale, scale, strings.ToUpper(s))
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("label preview: %w", err)
	}
	return buf.Bytes(), nil
}

// Printer sends labels as its Config says.
type Printer struct {
	cfg Config
}

// NewPrinter checks cfg and returns a Printer.
func NewPrinter(cfg Config) (*Printer, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.Printer != "" {
		if _, _, err := net.SplitHostPort(cfg.Printer); err != nil {
			cfg.Printer = net.JoinHostPort(cfg.Printer, "9100")
		}
	}
	return &Printer{cfg: cfg}, nil
}

// Print sends l to the printer and/or writes it to the folder, with its
// PNG preview. Every step is tried; the error joins what failed.
func (p *Printer) Print(ctx context.Context, l Label) error {
	var errs []error
	zpl := l.ZPL()
	if p.cfg.Dir != "" {
		name := fileName(l.Serial)
		if err := os.MkdirAll(p.cfg.Dir, 0o755); err != nil {
			errs = append(errs, fmt.Errorf("label folder: %w", err))
		} else {
			if p.cfg.Printer == "" {
				if err := os.WriteFile(filepath.Join(p.cfg.Dir, name+".zpl"), zpl, 0o644); err != nil {
					errs = append(errs, fmt.Errorf("write label: %w", err))
				}
			}
			img, err := l.PNG()
			if err == nil {
				err = os.WriteFile(filepath.Join(p.cfg.Dir, name+".png"), img, 0o644)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("label preview: %w", err))
			}
		}
	}
	if p.cfg.Printer != "" {
		if err := p.send(ctx, zpl); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (p *Printer) send(ctx context.Context, zpl []byte) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", p.cfg.Printer)
	if err != nil {
		return fmt.Errorf("label printer %s: %w", p.cfg.Printer, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write(zpl); err != nil {
		return fmt.Errorf("label printer %s: %w", p.cfg.Printer, err)
	}
	return nil
}

// fileName makes a device serial safe as a file name.
func fileName(serial string) string {
	s := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, serial)
	if s == "" {
		s = "_"
	}
	return s
}

// font3x5 is a 3×5 pixel font for the preview's text (upper case, digits
// and a few marks); each glyph is five rows of three bits.
var font3x5 = map[rune][5]uint8{
	'0': {7, 5, 5, 5, 7}, '1': {2, 6, 2, 2, 7}, '2': {7, 1, 7, 4, 7}, '3': {7, 1, 7, 1, 7}, '4': {5, 5, 7, 1, 1},
	'5': {7, 4, 7, 1, 7}, '6': {7, 4, 7, 5, 7}, '7': {7, 1, 1, 1, 1}, '8': {7, 5, 7, 5, 7}, '9': {7, 5, 7, 1, 7},
	'A': {2, 5, 7, 5, 5}, 'B': {6, 5, 6, 5, 6}, 'C': {7, 4, 4, 4, 7}, 'D': {6, 5, 5, 5, 6}, 'E': {7, 4, 6, 4, 7},
	'F': {7, 4, 6, 4, 4}, 'G': {7, 4, 5, 5, 7}, 'H': {5, 5, 7, 5, 5}, 'I': {7, 2, 2, 2, 7}, 'J': {1, 1, 1, 5, 7},
	'K': {5, 5, 6, 5, 5}, 'L': {4, 4, 4, 4, 7}, 'M': {5, 7, 7, 5, 5}, 'N': {6, 5, 5, 5, 5}, 'O': {7, 5, 5, 5, 7},
	'P': {7, 5, 7, 4, 4}, 'Q': {7, 5, 5, 7, 1}, 'R': {7, 5, 6, 5, 5}, 'S': {7, 4, 7, 1, 7}, 'T': {7, 2, 2, 2, 2},
	'U': {5, 5, 5, 5, 7}, 'V': {5, 5, 5, 5, 2}, 'W': {5, 5, 7, 7, 5}, 'X': {5, 5, 2, 5, 5}, 'Y': {5, 5, 2, 2, 2},
	'Z': {7, 1, 2, 4, 7}, '-': {0, 0, 7, 0, 0}, ':': {0, 2, 0, 2, 0}, '.': {0, 0, 0, 0, 2}, '/': {1, 1, 2, 4, 4},
	'_': {0, 0, 0, 0, 7},
}

// drawText writes s at (x, y) in font3x5 scaled by scale; a rune the font
// lacks is drawn as a box.
func drawText(img *image.Gray, x, y, scale int, s string) {
	for i, r := range s {
		g, ok := font3x5[r]
		if !ok && r != ' ' {
			g = [5]uint8{7, 5, 5, 5, 7}
		}
		for row := range 5 {
			for col := range 3 {
				if g[row]&(4>>col) == 0 {
					continue
				}
				for dy := range scale {
					for dx := range scale {
						img.SetGray(x+(i*4+col)*scale+dx, y+row*scale+dy, color.Gray{Y: 0})
					}
				}
			}
		}
	}
}
