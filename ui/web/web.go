// Package web is the plant dashboard: server-rendered HTML over the plant registry
// (db/plant), read-only, with SVG charts generated in Go: no JavaScript build, no CDN (the
// plant network is offline). Authentication is TLS client certificates (the http.Server's
// TLS config) or a configured user list (HTTP basic auth over TLS, bcrypt hashes).
package web

import (
	"bufio"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/wsc-project/wsc/db/plant"
)

//go:embed templates/*.html
var templates embed.FS

// Source is what the dashboard reads (a *plant.Registry connected as a read-only role).
type Source interface {
	Overview(ctx context.Context, day time.Time) (*plant.Overview, error)
	Find(ctx context.Context, serial string) ([]plant.Lookup, error)
}

// Server serves the dashboard.
type Server struct {
	src   Source
	users map[string][]byte // name -> bcrypt hash; nil: authentication is left to TLS client certificates
	dummy []byte
	now   func() time.Time
	tmpl  *template.Template
	// Quiet is how long a station may send nothing and still show "in sync" (default 2 min).
	Quiet time.Duration
}

// New returns a dashboard over src. users (name -> bcrypt hash) enables basic
// authentication; pass nil only when the listener requires TLS client certificates.
func New(src Source, users map[string][]byte) (*Server, error) {
	t, err := template.New("").Funcs(template.FuncMap{
		"pct":  func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) },
		"f1":   func(f float64) string { return fmt.Sprintf("%.1f", f) },
		"f2":   func(f float64) string { return fmt.Sprintf("%.2f", f) },
		"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
		"join": strings.Join,
	}).ParseFS(templates, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard templates: %w", err)
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte(fmt.Sprint(time.Now().UnixNano())), bcrypt.DefaultCost)
	if err != nil {
		return nil, err
	}
	return &Server{src: src, users: users, dummy: dummy, now: time.Now, tmpl: t, Quiet: 2 * time.Minute}, nil
}

// LoadUsers reads a user list: one "name:bcrypt-hash" per line, # comments.
func LoadUsers(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("user list: %w", err)
	}
	defer f.Close()
	users := map[string][]byte{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		name, hash, ok := strings.Cut(l, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("user list %s line %d: want name:bcrypt-hash", path, n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("user list %s line %d: not a bcrypt hash (make one with htpasswd -nB NAME)", path, n)
		}
		users[name] = []byte(hash)
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("user list %s: no users", path)
	}
	return users, sc.Err()
}

// Handler returns the dashboard's routes: / (overview), /lookup?q=SERIAL.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.overview)
	mux.HandleFunc("GET /lookup", s.lookup)
	return s.auth(mux)
}

func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if s.users == nil {
			if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
				http.Error(w, "a client certificate is required", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		name, pass, ok := r.BasicAuth()
		hash, known := s.users[name]
		if !known {
			hash = s.dummy // the same bcrypt work for unknown names
		}
		if err := bcrypt.CompareHashAndPassword(hash, []byte(pass)); !ok || !known || err != nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="wsc plant", charset="UTF-8"`)
			http.Error(w, "sign in with a dashboard user", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

type stationView struct {
	plant.StationStatus
	State string
	Chart template.HTML
}

type overviewView struct {
	O        *plant.Overview
	Stations []stationView
	Pareto   template.HTML
	Total    int64
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	o, err := s.src.Overview(r.Context(), now)
	if err != nil {
		s.fail(w, err)
		return
	}
	v := overviewView{O: o}
	for _, st := range o.Stations {
		v.Total += st.DevicesToday
		v.Stations = append(v.Stations, stationView{StationStatus: st, State: st.Status(now, s.Quiet), Chart: hourlyChart(st.ID, o.Hourly[st.ID])})
	}
	v.Pareto = paretoChart(o.Report.Pareto)
	s.render(w, "overview.html", v)
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	var ls []plant.Lookup
	if q != "" {
		var err error
		if ls, err = s.src.Find(r.Context(), q); err != nil {
			s.fail(w, err)
			return
		}
	}
	s.render(w, "lookup.html", struct {
		Q       string
		Results []plant.Lookup
	}{q, ls})
}

func (s *Server) render(w http.ResponseWriter, name string, data any) {
	var b strings.Builder
	if err := s.tmpl.ExecuteTemplate(&b, name, data); err != nil {
		s.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, b.String())
}

func (s *Server) fail(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	if errors.Is(err, plant.ErrUnavailable) {
		status = http.StatusServiceUnavailable
	}
	http.Error(w, "the plant registry could not answer: "+err.Error(), status)
}

// hourlyChart draws successful runs per hour as an SVG bar chart.
func hourlyChart(id string, h [24]int64) template.HTML {
	const w, ht, bw = 480, 120, 20
	var maxv int64 = 1
	for _, v := range h {
		maxv = max(maxv, v)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" id="hourly-%s" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="devices per hour">`,
		template.HTMLEscapeString(id), w, ht+16, w, ht+16)
	for i, v := range h {
		bh := int(float64(ht-4) * float64(v) / float64(maxv))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#2b7bb9" data-hour="%d" data-count="%d"><title>%02d:00 %d</title></rect>`,
			i*bw+1, ht-bh, bw-2, bh, i, v, i, v)
		if i%3 == 0 {
			fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="10">%02d</text>`, i*bw+2, ht+12, i)
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// paretoChart draws the failure Pareto as horizontal SVG bars.
func paretoChart(ps []plant.ParetoRow) template.HTML {
	if len(ps) == 0 {
		return template.HTML(`<p class="ok">No failures.</p>`)
	}
	const w, rowH = 640, 22
	var maxv int64 = 1
	for _, p := range ps {
		maxv = max(maxv, p.Count)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" id="pareto" width="%d" height="%d" role="img" aria-label="failure Pareto">`, w, rowH*len(ps)+4)
	for i, p := range ps {
		bw := int(float64(300) * float64(p.Count) / float64(maxv))
		label := template.HTMLEscapeString(strings.TrimSpace(p.Step + " — " + p.Error))
		fmt.Fprintf(&b, `<rect x="0" y="%d" width="%d" height="%d" fill="#c0392b" data-count="%d"></rect><text x="%d" y="%d" font-size="12">%d  %s</text>`,
			i*rowH+2, bw, rowH-6, p.Count, bw+6, i*rowH+15, p.Count, label)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
