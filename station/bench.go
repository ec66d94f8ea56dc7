package station

import (
	"context"
	"fmt"
	"sync"
)

// Outcome is the end of one job on the bench.
type Outcome struct {
	Job    Job
	Result *Result
	Err    error
}

// RunJobs provisions every job concurrently, one goroutine per slot, and
// returns the outcomes in job order. events, when set, receives every event
// of every slot (it must be safe for concurrent use).
func (p *Provisioner) RunJobs(ctx context.Context, jobs []Job, events func(Event)) []Outcome {
	out := make([]Outcome, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		if j.Events == nil {
			j.Events = events
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := p.Provision(ctx, j)
			out[i] = Outcome{Job: j, Result: res, Err: err}
		}()
	}
	wg.Wait()
	// The session ends here: certificates of failed runs that were never
	// confirmed are revoked (the outcome's error already said so).
	if _, err := p.SweepUnconfirmed(context.WithoutCancel(ctx)); err != nil {
		p.cfg.Logger.Error("revoke unconfirmed certificates", "err", err)
		for i := range out {
			if out[i].Err == nil {
				continue
			}
			out[i].Err = fmt.Errorf("%w; revoking unconfirmed certificates failed: %v", out[i].Err, err)
		}
	}
	return out
}
