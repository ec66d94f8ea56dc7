package plant

import (
	"context"
	"fmt"
	"time"
)

// ReportRow is one station and work order over the report's period.
type ReportRow struct {
	Station        string  `json:"station"`
	WorkOrder      string  `json:"work_order"`
	Devices        int64   `json:"devices"`          // successful runs
	Runs           int64   `json:"runs"`             // all finished runs
	FirstPassYield float64 `json:"first_pass_yield"` // devices whose first run in the period succeeded / devices tried
	DevicesPerHour float64 `json:"devices_per_hour"` // over the span from the first start to the last finish
	MeanCycle      float64 `json:"mean_cycle_s"`     // successful runs, seconds
	P95Cycle       float64 `json:"p95_cycle_s"`
}

// ParetoRow is one failure cause with its count.
type ParetoRow struct {
	Station string `json:"stations"` // where it happened, comma-separated
	Step    string `json:"step"`
	Error   string `json:"error"`
	Count   int64  `json:"count"`
}

// Report is the production report for a period.
type Report struct {
	From   time.Time   `json:"from"`
	To     time.Time   `json:"to"`
	Rows   []ReportRow `json:"rows"`
	Pareto []ParetoRow `json:"pareto"`
}

// Report computes, from the runs finished in [from, to), per station and work order: devices,
// first-pass yield, devices per hour, mean and p95 cycle time; and the failure Pareto (the
// ten most frequent step and error pairs).
func (r *Registry) Report(ctx context.Context, from, to time.Time) (*Report, error) {
	rep := &Report{From: from.UTC(), To: to.UTC()}
	rows, err := r.pool.Query(ctx, `
		WITH r AS (SELECT * FROM runs WHERE finished_at >= $1 AND finished_at < $2),
		first AS (SELECT DISTINCT ON (station_id, device_serial) station_id, work_order, result FROM r
			ORDER BY station_id, device_serial, started_at),
		fpy AS (SELECT station_id, work_order, count(*) FILTER (WHERE result = 'ok')::float8 / count(*) AS y
			FROM first GROUP BY 1, 2)
		SELECT r.station_id, r.work_order, count(*) FILTER (WHERE r.result = 'ok'), count(*), COALESCE(max(fpy.y), 0),
			COALESCE(extract(epoch FROM max(r.finished_at) - min(r.started_at))::float8, 0),
			COALESCE(avg(extract(epoch FROM r.finished_at - r.started_at)::float8) FILTER (WHERE r.result = 'ok'), 0),
			COALESCE(percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM r.finished_at - r.started_at)::float8)
				FILTER (WHERE r.result = 'ok'), 0)
		FROM r LEFT JOIN fpy ON fpy.station_id = r.station_id AND fpy.work_order = r.work_order
		GROUP BY 1, 2 ORDER BY 1, 2`, from.UTC(), to.UTC())
	if err != nil {
		return nil, fmt.Errorf("plant report: %w", mapErr(err))
	}
	for rows.Next() {
		var x ReportRow
		var span float64
		if err := rows.Scan(&x.Station, &x.WorkOrder, &x.Devices, &x.Runs, &x.FirstPassYield, &span, &x.MeanCycle, &x.P95Cycle); err != nil {
			rows.Close()
			return nil, fmt.Errorf("plant report: %w", mapErr(err))
		}
		if span > 0 {
			x.DevicesPerHour = float64(x.Devices) / (span / 3600)
		}
		rep.Rows = append(rep.Rows, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("plant report: %w", mapErr(err))
	}
	prow, err := r.pool.Query(ctx, `SELECT string_agg(DISTINCT station_id, ','), step, error, count(*) FROM runs
		WHERE finished_at >= $1 AND finished_at < $2 AND result = 'failed'
		GROUP BY 2, 3 ORDER BY 4 DESC, 2, 3 LIMIT 10`, from.UTC(), to.UTC())
	if err != nil {
		return nil, fmt.Errorf("plant report pareto: %w", mapErr(err))
	}
	defer prow.Close()
	for prow.Next() {
		var p ParetoRow
		if err := prow.Scan(&p.Station, &p.Step, &p.Error, &p.Count); err != nil {
			return nil, fmt.Errorf("plant report pareto: %w", mapErr(err))
		}
		rep.Pareto = append(rep.Pareto, p)
	}
	return rep, mapErr(prow.Err())
}
