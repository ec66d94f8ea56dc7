package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/station"
	"github.com/wsc-project/wsc/ui"
)

// operatorAuth checks operators against the station database.
type operatorAuth struct {
	ctx   context.Context
	store *db.Store
}

// Login checks an operator id and PIN; it returns the operator id, which is
// what the runs record.
func (a operatorAuth) Login(name, pin string) (string, error) {
	op, err := a.store.VerifyOperator(a.ctx, name, pin)
	if err != nil {
		if errors.Is(err, db.ErrBadPIN) || errors.Is(err, db.ErrNotFound) {
			return "", errors.New("unknown operator or wrong PIN")
		}
		return "", err
	}
	return op.ID, nil
}

// Badge accepts a scanned badge: the badge code is the operator id.
func (a operatorAuth) Badge(code string) (string, error) {
	op, err := a.store.GetOperator(a.ctx, code)
	if err != nil {
		if errors.Is(err, db.ErrNotFound) {
			return "", errors.New("badge not known at this station")
		}
		return "", err
	}
	return op.ID, nil
}

// redBinDesk is the supervisor's red-bin release on the operator screen:
// the same checks as wsc redbin release (PIN, supervisor role, a note),
// recorded in the station database and its ledger.
type redBinDesk struct {
	ctx   context.Context
	store *db.Store
}

// RedBins lists the chips held in the red bin.
func (d redBinDesk) RedBins() ([]ui.RedBinItem, error) {
	es, err := d.store.RedBins(d.ctx, true)
	if err != nil {
		return nil, err
	}
	out := make([]ui.RedBinItem, len(es))
	for i, e := range es {
		out[i] = ui.RedBinItem{ChipID: e.ChipID, Serial: e.Serial, Reason: e.Reason, At: e.CreatedAt}
	}
	return out, nil
}

// Release checks the supervisor and releases the chip.
func (d redBinDesk) Release(chip []byte, supervisor, pin, note string) error {
	op, err := verifySupervisor(d.ctx, d.store, supervisor, pin, "releases the red bin")
	if err != nil {
		return err
	}
	if err := d.store.ReleaseRedBin(d.ctx, chip, op.ID, note); err != nil {
		if errors.Is(err, db.ErrNotFound) {
			return errors.New("this chip is no longer in the red bin")
		}
		return err
	}
	return nil
}

// verifySupervisor checks a supervisor's PIN and role for an act on the
// operator screen (what names it in the refusal); the PIN is never echoed.
func verifySupervisor(ctx context.Context, store *db.Store, supervisor, pin, what string) (*db.Operator, error) {
	op, err := store.VerifyOperator(ctx, supervisor, pin)
	if err != nil {
		if errors.Is(err, db.ErrBadPIN) || errors.Is(err, db.ErrNotFound) {
			return nil, errors.New("unknown supervisor or wrong PIN")
		}
		return nil, err
	}
	if !supervisorRoles[op.Role] {
		return nil, fmt.Errorf("%s has role %q: only a supervisor (or security) %s", op.ID, op.Role, what)
	}
	return op, nil
}

// reworkBench is what the operator screen's rework needs from the bench
// (*station.Bench has it).
type reworkBench interface {
	Rework(slot int, label string, rw station.Rework) error
}

// reworkDesk is the supervisor's rework on the operator screen: the same
// checks as wsc provision --rework (PIN, supervisor role, the scanned
// label), then the failed slot runs again under the rework; chipReset is
// recorded by the run (owner_auth.chip-reset, by this supervisor).
type reworkDesk struct {
	ctx   context.Context
	store *db.Store
	bench reworkBench
}

// Rework checks the supervisor and runs the slot again under the rework.
func (d reworkDesk) Rework(slot int, label, supervisor, pin string, chipReset bool) error {
	op, err := verifySupervisor(d.ctx, d.store, supervisor, pin, "authorises a rework")
	if err != nil {
		return err
	}
	return d.bench.Rework(slot, label, station.Rework{Supervisor: op.ID, ChipReset: chipReset})
}

// runStationTUI runs the operator view: login, then the bench. The work
// order starts stopped; the operator starts it with s.
func runStationTUI(ctx context.Context, l *line) error {
	var p *tea.Program
	slots, err := l.cfg.BenchSlots()
	if err != nil {
		return err
	}
	ap, err := afterPass(l)
	if err != nil {
		return err
	}
	// Events reach the view through a Feed: the station never waits for the
	// screen to draw.
	feed := ui.NewFeed(func(m tea.Msg) {
		if p != nil {
			p.Send(m)
		}
	})
	defer feed.Close()
	bench, err := station.NewBench(station.BenchConfig{Provisioner: l.prov, Slots: slots, MaxFailures: l.cfg.MaxFailures, AfterPass: ap,
		Events: feed.Event})
	if err != nil {
		return err
	}
	opts := ui.BenchOptions{Control: bench, Auth: operatorAuth{ctx: ctx, store: l.store},
		RedBins: redBinDesk{ctx: ctx, store: l.store}, Rework: reworkDesk{ctx: ctx, store: l.store, bench: bench}, WorkOrders: l.cfg.WorkOrderIDs(), Switcher: woSwitcher{ctx: ctx, l: l, bench: bench},
		Title: "wsc station", WorkOrder: l.cfg.WorkOrder.ID, Station: l.cfg.Station}
	if l.cfg.Plant.DSN != "" {
		// The status line shows the plant sync: in sync, N behind, offline since.
		opts.Plant = func(ctx context.Context) (string, error) {
			st, err := l.store.OutboxStatus(ctx)
			return st.String(), err
		}
	}
	var m tea.Model = ui.NewBenchModel(opts)
	if path := os.Getenv("WSC_STARTUP_REPORT"); path != "" {
		// Measurement hook for scripts/bench: write the start-up timings
		// and quit after the first frame.
		m = &firstFrame{Model: m, path: path, tuiStart: time.Now()}
	}
	p = tea.NewProgram(m, tea.WithAltScreen(), tea.WithContext(ctx))
	bctx, cancel := context.WithCancel(ctx)
	go l.watchCA(bctx, 2*time.Second, false, func(msg string) { p.Send(ui.ProgressMsg("CA: " + msg)) })
	done := make(chan error, 1)
	go func() { done <- bench.Run(bctx) }()
	_, err = p.Run()
	cancel()
	<-done
	if err != nil && !errors.Is(err, tea.ErrProgramKilled) {
		return fmt.Errorf("operator view: %w", err)
	}
	fmt.Fprintln(os.Stdout, "station stopped")
	return nil
}

// processStart is when the process started (as near as Go lets us see).
var processStart = time.Now()

// firstFrame records when the first frame is rendered, writes the start-up
// timings to path and quits.
type firstFrame struct {
	tea.Model
	path     string
	tuiStart time.Time
	done     bool
}

func (f *firstFrame) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	m, cmd := f.Model.Update(msg)
	f.Model = m
	if f.done {
		return f, tea.Quit
	}
	return f, cmd
}

func (f *firstFrame) View() string {
	v := f.Model.View()
	if !f.done {
		f.done = true
		now := time.Now()
		report := fmt.Sprintf("{\"total_ms\": %.3f, \"before_view_ms\": %.3f, \"view_ms\": %.3f, \"unlock_ms\": %.3f}\n",
			ms(now.Sub(processStart)), ms(f.tuiStart.Sub(processStart)), ms(now.Sub(f.tuiStart)), ms(unlockTime))
		_ = os.WriteFile(f.path, []byte(report), 0o644)
	}
	return v
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
