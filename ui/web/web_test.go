package web

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/db/plant"
	"github.com/wsc-project/wsc/db/plant/pgtest"
)

// chromium finds the Debian chromium binary (scripts/deps installs it).
func chromium(t *testing.T) string {
	for _, p := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if testing.Short() {
		t.Skip("chromium not installed; run scripts/deps")
	}
	t.Fatal("chromium not installed: run scripts/deps")
	return ""
}

// The dashboard in a real headless Chromium: the numbers on the page are the registry's, the
// lookup finds a device, a wrong password is refused; screenshots go to docs/img when
// WSC_SCREENSHOTS is set (the docs use them).
func TestDashboardInBrowser(t *testing.T) {
	browser := chromium(t)
	ctx := context.Background()
	srv := pgtest.Start(t)
	if err := srv.CreateDatabase("plant"); err != nil {
		t.Fatal(err)
	}
	admin, err := plant.Open(ctx, srv.AdminDSNFor("plant"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"line1": 7, "line2": 4}
	for id, n := range want {
		syncStation(t, srv, admin, id, n)
	}
	if err := admin.AddReader(ctx, "dashboard"); err != nil {
		t.Fatal(err)
	}
	reader, err := plant.Open(ctx, srv.ClientDSN("dashboard", "plant", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	dash, err := New(reader, map[string][]byte{"supervisor": hash})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(dash.Handler())
	defer hs.Close()

	// Without or with wrong credentials: 401.
	for _, auth := range []string{"", "supervisor:wrong", "nobody:s3cret"} {
		req, _ := http.NewRequest("GET", hs.URL+"/", nil)
		if auth != "" {
			u, p, _ := strings.Cut(auth, ":")
			req.SetBasicAuth(u, p)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("auth %q: status %d", auth, resp.StatusCode)
		}
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.Flag("headless", true), chromedp.WindowSize(1280, 1400))
	actx, cancel := chromedp.NewExecAllocator(ctx, opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	bctx, cancel = context.WithTimeout(bctx, 3*time.Minute)
	defer cancel()
	authz := "Basic " + base64.StdEncoding.EncodeToString([]byte("supervisor:s3cret"))
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(v)
	}
	if _, err := chromedp.Call(bctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(bctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": authz}}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(hs.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#stations"))); err != nil {
		t.Fatal(err)
	}
	for id := range want {
		today, devices := text(`#station-`+id+` [data-field="today"]`), text(`#station-`+id+` [data-field="devices"]`)
		status, head := text(`#station-`+id+` [data-field="status"]`), text(`#station-`+id+` [data-field="head"]`)
		regHead, _, err := admin.Head(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if today != strconv.Itoa(want[id]) || devices != strconv.Itoa(want[id]) || status != "in sync" || head != strconv.FormatInt(regHead, 10) {
			t.Fatalf("%s on the page: today %q devices %q status %q head %q; registry: %d devices, head %d", id, today, devices, status, head, want[id], regHead)
		}
	}
	if total := text("#total-today"); total != strconv.Itoa(want["line1"]+want["line2"]) {
		t.Fatalf("total today on the page %q, want %d", total, want["line1"]+want["line2"])
	}
	day := time.Now().UTC().Truncate(24 * time.Hour)
	rep, err := admin.Report(ctx, day, day.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, r := range rep.Rows {
		fpyWant := fmt.Sprintf("%.1f%%", 100*r.FirstPassYield)
		if got := text(`#report tr[data-station="` + r.Station + `"] [data-field="fpy"]`); got != fpyWant {
			t.Fatalf("%s first-pass yield on the page %q, registry %q", r.Station, got, fpyWant)
		}
		if got := text(`#report tr[data-station="` + r.Station + `"] [data-field="runs"]`); got != strconv.FormatInt(r.Runs, 10) {
			t.Fatalf("%s runs on the page %q, registry %d", r.Station, got, r.Runs)
		}
		checked++
	}
	if checked != 2 {
		t.Fatalf("report rows %d", checked)
	}
	bars, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#hourly-line1 rect").length`))
	if err != nil || bars != 24 {
		t.Fatalf("hourly chart has %d bars (%v)", bars, err)
	}
	pareto, err := chromedp.Run(bctx, chromedp.TextContent(chromedp.CSS("#pareto")))
	if err != nil || !strings.Contains(pareto, "credential activation failed") {
		t.Fatalf("failure Pareto on the page: %q (%v)", pareto, err)
	}
	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	saveShot(t, "plant-dashboard.png", shot)
	// Lookup by device serial.
	if err := chromedp.Do(bctx, chromedp.SetValue(chromedp.CSS("#q"), "line2-D000003")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.RunResponse(bctx, chromedp.Submit(chromedp.CSS("#q"))); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx, chromedp.WaitVisible(chromedp.CSS("#results"))); err != nil {
		t.Fatal(err)
	}
	if dev := text(`#results [data-field="device"]`); dev != "line2-D000003" {
		t.Fatalf("lookup shows %q", dev)
	}
	if shot, err = chromedp.Run(bctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatal(err)
	}
	saveShot(t, "plant-lookup.png", shot)
}

func saveShot(t *testing.T, name string, png []byte) {
	dir := os.Getenv("WSC_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// syncStation provisions n devices at a real station database (db-level records) and syncs
// them to the registry as the station's own role.
func syncStation(t *testing.T, srv *pgtest.Server, admin *plant.Registry, id string, n int) {
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	role := "station_" + id
	if err := admin.AddStation(ctx, id, role, &key.PublicKey); err != nil {
		t.Fatal(err)
	}
	store, err := db.Open(filepath.Join(t.TempDir(), "wsc.db"), db.WithAuditSigner(key, 10), db.WithActor(id))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	wo := "WO-" + id
	if err := store.CreateWorkOrder(ctx, db.WorkOrder{ID: wo, Product: "board", Quantity: 1000}); err != nil {
		t.Fatal(err)
	}
	ik, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	it := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: id + " intermediate"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, SubjectKeyId: []byte(id)}
	ider, _ := x509.CreateCertificate(rand.Reader, it, it, &ik.PublicKey, ik)
	inter, _ := x509.ParseCertificate(ider)
	for i := 1; i <= n; i++ {
		serial := fmt.Sprintf("%s-D%06d", id, i)
		if err := store.EnsureDevice(ctx, db.Device{Serial: serial, Backend: "tpm", Model: "m", EKPublicHash: db.KeyHash([]byte(serial))}); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 { // a failed first attempt
			run, _ := store.StartRun(ctx, db.RunStart{DeviceSerial: serial, Slot: 1, Station: id, WorkOrder: wo})
			if err := store.FinishRun(ctx, run, db.RunFailed, "credential activation failed", nil); err != nil {
				t.Fatal(err)
			}
		}
		run, err := store.StartRun(ctx, db.RunStart{DeviceSerial: serial, Slot: 1, Station: id, WorkOrder: wo})
		if err != nil {
			t.Fatal(err)
		}
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		kder, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		intent, _, err := store.BeginIssue(ctx, db.IssueIntent{DeviceSerial: serial, KeyPublicDER: kder, WorkOrder: wo, RunID: run})
		if err != nil {
			t.Fatal(err)
		}
		lt := &x509.Certificate{SerialNumber: big.NewInt(int64(1000 + i)), Subject: pkix.Name{SerialNumber: serial},
			NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
		der, _ := x509.CreateCertificate(rand.Reader, lt, inter, &k.PublicKey, ik)
		if err := store.CompleteIssue(ctx, intent, db.Certificate{DeviceSerial: serial, DER: der}); err != nil {
			t.Fatal(err)
		}
		c, _ := store.LiveCertificate(ctx, serial)
		if err := store.ConfirmAndFinish(ctx, c.SerialHex, run, map[string]time.Duration{"issue": time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := plant.Open(ctx, srv.ClientDSN(role, "plant", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if _, err := (&plant.Syncer{Store: store, Registry: reg, Station: id}).SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
}
