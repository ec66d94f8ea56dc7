package label

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
)

func testLabel() Label {
	return Label{Serial: "SIM-0007", WorkOrder: "WO-1001", Date: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC),
		Fingerprint: Fingerprint([]byte("certificate DER"))}
}

// decodeQR reads the QR code of a PNG with an independent decoder (zxing).
func decodeQR(t *testing.T, b []byte) string {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]interface{}{gozxing.DecodeHintType_PURE_BARCODE: false})
	if err != nil {
		t.Fatalf("decode the preview's QR code: %v", err)
	}
	return res.GetText()
}

// TestPrintToPrinterAndPreview: a TCP listener stands for the printer on
// port 9100; it receives one ZPL label with the serial, work order and
// date, and the QR field; the PNG preview written beside it holds a QR code
// that decodes to the serial and the certificate fingerprint.
func TestPrintToPrinterAndPreview(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	dir := t.TempDir()
	p, err := NewPrinter(Config{Printer: ln.Addr().String(), Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	l := testLabel()
	if err := p.Print(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	zpl := string(<-got)
	for _, want := range []string{"^XA", "^FDSN SIM-0007^FS", "^FDWO WO-1001^FS", "2026-11-30", "^BQN,2,3^FDMA,SN:SIM-0007 SHA256:" + l.Fingerprint, "^XZ"} {
		if !strings.Contains(zpl, want) {
			t.Errorf("ZPL lacks %q:\n%s", want, zpl)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "SIM-0007.png"))
	if err != nil {
		t.Fatal(err)
	}
	if text := decodeQR(t, b); text != "SN:SIM-0007\nSHA256:"+l.Fingerprint {
		t.Fatalf("QR code says %q", text)
	}
	if _, err := os.Stat(filepath.Join(dir, "SIM-0007.zpl")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ZPL file written although a printer took it: %v", err)
	}
}

// TestPrintToFolderAndFailures: without a printer the ZPL goes into the
// folder; a printer that does not answer is an error naming it (the bench
// shows it on the card; the device is not failed); device text cannot
// inject ZPL commands, and an odd serial makes a safe file name.
func TestPrintToFolderAndFailures(t *testing.T) {
	dir := t.TempDir()
	p, err := NewPrinter(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	l := testLabel()
	l.Serial = "EVIL^XZ^XA~JR/../x"
	if err := p.Print(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("folder holds %d files, want a .zpl and a .png", len(entries))
	}
	for _, e := range entries {
		if strings.ContainsAny(e.Name(), "/^~") {
			t.Fatalf("unsafe file name %q", e.Name())
		}
		if strings.HasSuffix(e.Name(), ".zpl") {
			b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			if bytes.Count(b, []byte("^XA")) != 1 || bytes.Contains(b, []byte("~JR")) {
				t.Fatalf("device text became ZPL commands:\n%s", b)
			}
		}
	}
	// A port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p, err = NewPrinter(Config{Printer: addr, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Print(context.Background(), testLabel()); err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("unreachable printer: %v", err)
	}
	if _, err := NewPrinter(Config{}); err == nil {
		t.Fatal("a label config with neither printer nor dir accepted")
	}
}
