package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/station"
)

// workOrder is the id of the line's current work order.
func (l *line) workOrder() string {
	if v, ok := l.wo.Load().(string); ok {
		return v
	}
	return l.cfg.WorkOrder.ID
}

// provisionerFor builds the provisioner of another work order of the
// line's config: its profile, proof policy and quantity, recorded in the
// database as at start.
func (l *line) provisionerFor(ctx context.Context, id string) (*station.Provisioner, error) {
	cfg, err := l.cfg.ForWorkOrder(id)
	if err != nil {
		return nil, err
	}
	var profile *ca.Profile
	if p := cfg.WorkOrder.Profile; p != "" && p != "default" {
		if profile, err = ca.LoadProfile(p); err != nil {
			return nil, err
		}
	}
	if err := station.EnsureWorkOrder(ctx, l.store, cfg.WorkOrder); err != nil {
		return nil, err
	}
	pcfg := station.Config{Issuer: l.ca, Store: l.store, Station: cfg.Station, WorkOrder: cfg.WorkOrder.ID,
		Profile: profile, Lock: cfg.WorkOrder.Lock == "lock", Baud: cfg.Baud, EOLModuleDir: cfg.EOLModules}
	if pcfg.Proofs, err = cfg.ProofPolicy(); err != nil {
		return nil, err
	}
	if pcfg.Trust, err = cfg.TrustConfig(); err != nil {
		return nil, err
	}
	return station.NewProvisioner(pcfg)
}

// woSwitcher lets a supervisor switch the bench to another work order of
// the config from the operator screen.
type woSwitcher struct {
	ctx   context.Context
	l     *line
	bench *station.Bench
}

// SwitchWorkOrder checks the supervisor and switches the bench.
func (s woSwitcher) SwitchWorkOrder(id, supervisor, pin string) error {
	op, err := s.l.store.VerifyOperator(s.ctx, supervisor, pin)
	if err != nil {
		if errors.Is(err, db.ErrBadPIN) || errors.Is(err, db.ErrNotFound) {
			return errors.New("unknown supervisor or wrong PIN")
		}
		return err
	}
	if !supervisorRoles[op.Role] {
		return fmt.Errorf("%s has role %q: only a supervisor chooses the work order", op.ID, op.Role)
	}
	p, err := s.l.provisionerFor(s.ctx, id)
	if err != nil {
		return err
	}
	if err := s.bench.SwitchWorkOrder(s.ctx, p); err != nil {
		return err
	}
	s.l.wo.Store(id)
	l := s.l
	return l.store.Audit(s.ctx, "work_order_switch", op.ID, map[string]string{"work_order": id, "station": l.cfg.Station})
}
