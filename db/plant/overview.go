package plant

import (
	"context"
	"fmt"
	"time"
)

// StationStatus is a station as the registry sees it.
type StationStatus struct {
	ID           string    `json:"id"`
	Head         int64     `json:"head"`          // last witnessed ledger row
	LastReceived time.Time `json:"last_received"` // zero if never synced
	Devices      int64     `json:"devices"`       // devices with a confirmed certificate, all time (a device's identity and signing certificates, or a re-provisioning, count once)
	DevicesToday int64     `json:"devices_today"` // successful runs finished in the day
	Alarms       int64     `json:"alarms"`
}

// Status says "in sync" when the station sent rows within quiet, "silent since …" otherwise
// (the registry cannot tell an idle station from a disconnected one; the station's own
// screen shows its outbox).
func (s StationStatus) Status(now time.Time, quiet time.Duration) string {
	switch {
	case s.LastReceived.IsZero():
		return "never synced"
	case now.Sub(s.LastReceived) <= quiet:
		return "in sync"
	default:
		return "silent since " + s.LastReceived.Local().Format("2006-01-02 15:04")
	}
}

// RedBin is a device put in the red bin.
type RedBin struct {
	Station string    `json:"station"`
	Device  string    `json:"device"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

// Overview is what the dashboard shows for a day.
type Overview struct {
	Day      time.Time
	Stations []StationStatus
	Hourly   map[string][24]int64 // station -> successful runs per hour of the day (UTC)
	Report   *Report
	RedBins  []RedBin
	Findings []Finding
}

// Overview gathers the dashboard's numbers for the UTC day containing day.
func (r *Registry) Overview(ctx context.Context, day time.Time) (*Overview, error) {
	from := day.UTC().Truncate(24 * time.Hour)
	to := from.Add(24 * time.Hour)
	o := &Overview{Day: from, Hourly: map[string][24]int64{}}
	rows, err := r.pool.Query(ctx, `SELECT s.id,
			COALESCE((SELECT max(seq) FROM ledger l WHERE l.station_id = s.id), 0),
			(SELECT max(received_at) FROM ledger l WHERE l.station_id = s.id),
			(SELECT count(DISTINCT c.device_serial) FROM confirmations c WHERE c.station_id = s.id),
			(SELECT count(*) FROM runs u WHERE u.station_id = s.id AND u.result = 'ok' AND u.finished_at >= $1 AND u.finished_at < $2),
			(SELECT count(*) FROM alarms a WHERE a.station_id = s.id)
		FROM stations s ORDER BY s.id`, from, to)
	if err != nil {
		return nil, fmt.Errorf("overview: %w", mapErr(err))
	}
	for rows.Next() {
		var s StationStatus
		var last *time.Time
		if err := rows.Scan(&s.ID, &s.Head, &last, &s.Devices, &s.DevicesToday, &s.Alarms); err != nil {
			rows.Close()
			return nil, fmt.Errorf("overview: %w", mapErr(err))
		}
		if last != nil {
			s.LastReceived = *last
		}
		o.Stations = append(o.Stations, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("overview: %w", mapErr(err))
	}
	hr, err := r.pool.Query(ctx, `SELECT station_id, extract(hour FROM finished_at AT TIME ZONE 'UTC')::int, count(*) FROM runs
		WHERE result = 'ok' AND finished_at >= $1 AND finished_at < $2 GROUP BY 1, 2`, from, to)
	if err != nil {
		return nil, fmt.Errorf("overview hourly: %w", mapErr(err))
	}
	for hr.Next() {
		var st string
		var h int
		var n int64
		if err := hr.Scan(&st, &h, &n); err != nil {
			hr.Close()
			return nil, fmt.Errorf("overview hourly: %w", mapErr(err))
		}
		a := o.Hourly[st]
		a[h] = n
		o.Hourly[st] = a
	}
	hr.Close()
	if o.Report, err = r.Report(ctx, from, to); err != nil {
		return nil, err
	}
	rb, err := r.pool.Query(ctx, "SELECT station_id, device_serial, reason, at FROM red_bins ORDER BY at DESC LIMIT 20")
	if err != nil {
		return nil, fmt.Errorf("overview red bins: %w", mapErr(err))
	}
	for rb.Next() {
		var x RedBin
		if err := rb.Scan(&x.Station, &x.Device, &x.Reason, &x.At); err != nil {
			rb.Close()
			return nil, fmt.Errorf("overview red bins: %w", mapErr(err))
		}
		o.RedBins = append(o.RedBins, x)
	}
	rb.Close()
	if o.Findings, err = r.CheckRecords(ctx); err != nil {
		return nil, err
	}
	return o, nil
}
