package qa

import (
	"fmt"
	"testing"

	tea "github.com/charmbracelet/bubbletea"
)

// Golden tests run the QA view in a real bubbletea program (teatest) at
// 80×24 and 120×40, drive it to each screen, quit, and compare the final
// View with testdata/<test name>/<screen>_<w>x<h>.golden. Regenerate with
//
//	go test ./ui/qa -run Golden -update
//
// Output is deterministic: ASCII colour profile (TestMain), a frozen clock,
// fixed certificate serials, and the verified folder is "." (chdir).
func TestQAGolden(t *testing.T) {
	for _, size := range [][2]int{{80, 24}, {120, 40}} {
		w, h := size[0], size[1]
		name := func(s string) string { return fmt.Sprintf("%s_%dx%d", s, w, h) }
		t.Run(name("pick"), func(t *testing.T) {
			f := newQAFixture(t)
			tm := startProgram(t, New(Options{Runner: f.runner(), Now: fixedClock(t0)}), w, h, "Folder to verify")
			finish(t, tm)
		})
		t.Run(name("running"), func(t *testing.T) {
			f := newQAFixture(t)
			back := chdir(t, f.dir)
			g := &gatedRunner{inner: f.runner(), at: 2, release: make(chan struct{})}
			t.Cleanup(g.Release)
			tm := startProgram(t, New(Options{Runner: g, Now: fixedClock(t0)}), w, h, "Folder to verify")
			tm.Send(keyType(tea.KeyEnter))
			waitFor(t, tm, "2/5")
			back()
			finish(t, tm)
		})
		t.Run(name("results"), func(t *testing.T) {
			f := newQAFixture(t)
			back := chdir(t, f.dir)
			tm := startProgram(t, New(Options{Runner: f.runner(), Now: fixedClock(t0)}), w, h, "Folder to verify")
			tm.Send(keyType(tea.KeyEnter))
			waitFor(t, tm, "failures only")
			back()
			// The tampered module is selected: its reason is in the details.
			finish(t, tm, keyType(tea.KeyDown), keyType(tea.KeyDown))
		})
		t.Run(name("failures_only"), func(t *testing.T) {
			f := newQAFixture(t)
			back := chdir(t, f.dir)
			tm := startProgram(t, New(Options{Runner: f.runner(), Now: fixedClock(t0)}), w, h, "Folder to verify")
			tm.Send(keyType(tea.KeyEnter))
			waitFor(t, tm, "failures only")
			back()
			finish(t, tm, keyRunes("f"), keyType(tea.KeyDown), keyType(tea.KeyDown))
		})
		t.Run(name("export"), func(t *testing.T) {
			f := newQAFixture(t)
			back := chdir(t, f.dir)
			tm := startProgram(t, New(Options{Runner: f.runner(), Now: fixedClock(t0)}), w, h, "Folder to verify")
			tm.Send(keyType(tea.KeyEnter))
			waitFor(t, tm, "failures only")
			msgs := []tea.Msg{keyRunes("e")}
			for range len("wsc-verify-report.json") {
				msgs = append(msgs, keyType(tea.KeyBackspace))
			}
			back()
			finish(t, tm, append(msgs, typeKeys("qa.xml")...)...)
		})
		t.Run(name("folder_error"), func(t *testing.T) {
			f := newQAFixture(t)
			back := chdir(t, f.dir)
			tm := startProgram(t, New(Options{Runner: f.runner(), Dir: "no-such-folder", Now: fixedClock(t0)}), w, h, "Folder to verify")
			tm.Send(keyType(tea.KeyEnter))
			waitFor(t, tm, "does not exist")
			back()
			finish(t, tm)
		})
		t.Run(name("empty"), func(t *testing.T) {
			f := newQAFixture(t)
			back := chdir(t, t.TempDir())
			tm := startProgram(t, New(Options{Runner: f.runner(), Now: fixedClock(t0)}), w, h, "Folder to verify")
			tm.Send(keyType(tea.KeyEnter))
			waitFor(t, tm, "No .wasm module found")
			back()
			finish(t, tm)
		})
	}
}
