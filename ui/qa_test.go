package ui

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/wsc-project/wsc/wasmsign"
)

// qaUpdate applies msgs to a QA model, runs the commands and feeds their
// messages back until nothing is left. Commands here return promptly: the
// verification command waits for the runner's next report.
func qaUpdate(t *testing.T, m QAModel, msgs ...tea.Msg) QAModel {
	t.Helper()
	for len(msgs) > 0 {
		var cmds []tea.Cmd
		for _, msg := range msgs {
			nm, cmd := m.Update(msg)
			m = nm.(QAModel)
			cmds = append(cmds, cmd)
		}
		msgs = run(cmds...)
	}
	return m
}

// verifiedQA returns a QA view that verified the fixture folder.
func verifiedQA(t *testing.T) (QAModel, qaFixture) {
	t.Helper()
	f := newQAFixture(t)
	m := NewQAModel(QAOptions{Runner: f.runner(), Dir: f.dir, Now: fixedClock(t0)})
	m = qaUpdate(t, m, tea.WindowSizeMsg{Width: 100, Height: 30}, keyType(tea.KeyEnter))
	if m.phase != qaResults || len(m.results) != 5 {
		t.Fatalf("phase %v, %d results; notice %q", m.phase, len(m.results), m.notice)
	}
	return m, f
}

func TestQAVerifiesFolder(t *testing.T) {
	m, _ := verifiedQA(t)
	if m.done != 5 || m.total != 5 {
		t.Fatalf("progress %d/%d, want 5/5", m.done, m.total)
	}
	v := m.View()
	mustContain(t, v, "5 modules", "2 valid", "3 invalid", "line-a/fw-0001.wasm", "5f3a01", "TPM-00A1B2C3D4E5F601",
		"module content does not mat")
}

func TestQAFailuresFilter(t *testing.T) {
	m, _ := verifiedQA(t)
	m = qaUpdate(t, m, keyRunes("f"))
	if got := len(m.table.Rows()); got != 3 {
		t.Fatalf("failures only: %d rows, want 3", got)
	}
	for _, row := range m.table.Rows() {
		if row[3] == string(wasmsign.StatusValid) {
			t.Fatalf("valid row in failures only: %q", row)
		}
	}
	mustContain(t, m.View(), "failures only")
	m = qaUpdate(t, m, keyRunes("f"))
	if got := len(m.table.Rows()); got != 5 {
		t.Fatalf("all results: %d rows, want 5", got)
	}
}

func TestQAExport(t *testing.T) {
	for _, tt := range []struct {
		name, file, format string
		check              func(t *testing.T, b []byte)
	}{
		{"json", "report.json", "JSON", func(t *testing.T, b []byte) {
			var rep wasmsign.Report
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Total != 5 || rep.Valid != 2 {
				t.Fatalf("report %+v", rep)
			}
		}},
		{"junit", "report.xml", "JUnit", func(t *testing.T, b []byte) {
			var v struct {
				XMLName xml.Name
			}
			if err := xml.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), "fw-0003.wasm") {
				t.Fatalf("JUnit report lacks a module:\n%s", b)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := verifiedQA(t)
			// Filtering does not change what is exported: every result.
			m = qaUpdate(t, m, keyRunes("f"), keyRunes("e"))
			if m.phase != qaExport {
				t.Fatal("e does not open the export field")
			}
			path := filepath.Join(t.TempDir(), tt.file)
			m.out.SetValue(path)
			m = qaUpdate(t, m, keyType(tea.KeyEnter))
			if m.noticeErr || m.phase != qaResults {
				t.Fatalf("export: %q", m.notice)
			}
			mustContain(t, m.View(), tt.format+" report written to")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, b)
		})
	}
}

func TestQAExportError(t *testing.T) {
	m, _ := verifiedQA(t)
	m = qaUpdate(t, m, keyRunes("e"))
	m.out.SetValue(filepath.Join(t.TempDir(), "missing", "r.json"))
	m = qaUpdate(t, m, keyType(tea.KeyEnter))
	if !m.noticeErr || !strings.Contains(m.notice, "Report not written: create report:") {
		t.Fatalf("notice %q", m.notice)
	}
}

func TestQAEmptyFolder(t *testing.T) {
	f := newQAFixture(t)
	m := NewQAModel(QAOptions{Runner: f.runner(), Dir: t.TempDir(), Now: fixedClock(t0)})
	m = qaUpdate(t, m, keyType(tea.KeyEnter))
	if m.phase != qaPick {
		t.Fatalf("phase %v after an empty folder", m.phase)
	}
	mustContain(t, m.View(), "No .wasm module found in")
}

func TestQACancel(t *testing.T) {
	f := newQAFixture(t)
	g := &gatedRunner{inner: f.runner(), at: 2, release: make(chan struct{})}
	t.Cleanup(g.Release)
	m := NewQAModel(QAOptions{Runner: g, Dir: f.dir, Now: fixedClock(t0)})
	nm, cmd := m.Update(keyType(tea.KeyEnter))
	m = nm.(QAModel)
	// Follow the run until it holds at 2 of 5.
	for m.done < 2 {
		nm, cmd = m.Update(cmd())
		m = nm.(QAModel)
	}
	mustContain(t, m.View(), "2/5")
	nm, ccmd := m.Update(keyType(tea.KeyEsc))
	m = nm.(QAModel)
	run(ccmd) // cancels the run's context
	for m.phase == qaRunning {
		nm, cmd = m.Update(cmd())
		m = nm.(QAModel)
	}
	if !strings.Contains(m.notice, "Verification cancelled after 2 of 5 modules") {
		t.Fatalf("notice %q", m.notice)
	}
}

func TestQAStaleRunIgnored(t *testing.T) {
	m := NewQAModel(QAOptions{Runner: VerifyFunc(func(context.Context, []string, func(int, int)) ([]wasmsign.Result, error) {
		return nil, nil
	})})
	m.run, m.phase = 2, qaRunning
	nm, _ := m.Update(QAProgressMsg{Run: 1, Done: 3, Total: 4})
	nm, _ = nm.Update(QADoneMsg{Run: 1, Results: []wasmsign.Result{{File: "x.wasm"}}})
	m = nm.(QAModel)
	if m.done != 0 || m.phase != qaRunning || len(m.results) != 0 {
		t.Fatal("a message of an older run changed the view")
	}
}
