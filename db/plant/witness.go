package plant

import (
	"bytes"
	"context"
	"fmt"

	"github.com/wsc-project/wsc/db"
)

// WitnessReport is the result of comparing a station's local ledger with the registry's copy.
type WitnessReport struct {
	Station     string
	Witnessed   int64 // rows the registry holds, all found identical locally
	LocalHead   int64
	PlantHead   int64
	Unwitnessed int64 // local rows after the registry's head (not yet synced)
}

// VerifyStation checks the station's local ledger against what the registry witnessed:
// every row the registry holds must be present locally with the same hash. A missing row
// (truncation) or a different one (rewrite) returns a *TamperError (errors.Is ErrTampered)
// and raises an alarm, so a rewritten station disk is caught even when every local anchor
// (head, checkpoints) was rewritten consistently.
func VerifyStation(ctx context.Context, store *db.Store, reg *Registry, station string) (*WitnessReport, error) {
	rep := &WitnessReport{Station: station}
	var err error
	if rep.LocalHead, _, err = store.AuditHead(ctx); err != nil {
		return nil, err
	}
	const page = 5000
	for from := int64(1); ; from += page {
		rows, err := reg.pool.Query(ctx, "SELECT seq, hash FROM ledger WHERE station_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
			station, from, from+page-1)
		if err != nil {
			return nil, fmt.Errorf("verify against plant: %w", mapErr(err))
		}
		type sh struct {
			seq  int64
			hash []byte
		}
		var plant []sh
		for rows.Next() {
			var x sh
			if err := rows.Scan(&x.seq, &x.hash); err != nil {
				rows.Close()
				return nil, fmt.Errorf("verify against plant: %w", mapErr(err))
			}
			plant = append(plant, x)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("verify against plant: %w", mapErr(err))
		}
		if len(plant) == 0 {
			break
		}
		local, err := store.AuditEntries(ctx, from, from+page-1)
		if err != nil {
			return nil, err
		}
		byseq := make(map[int64][]byte, len(local))
		for _, e := range local {
			byseq[e.Seq] = e.Hash
		}
		for _, p := range plant {
			h, ok := byseq[p.seq]
			if !ok {
				return rep, reg.RaiseAlarm(ctx, station, "truncation", p.seq,
					fmt.Sprintf("row %d witnessed by the registry is missing from the station's ledger (local head %d)", p.seq, rep.LocalHead))
			}
			if !bytes.Equal(h, p.hash) {
				return rep, reg.RaiseAlarm(ctx, station, "fork", p.seq,
					fmt.Sprintf("row %d of the station's ledger differs from the one the registry witnessed", p.seq))
			}
			if e := findEntry(local, p.seq); !bytes.Equal(db.AuditRowHash(e), e.Hash) {
				return rep, reg.RaiseAlarm(ctx, station, "edited", p.seq,
					fmt.Sprintf("row %d of the station's ledger no longer matches its hash", p.seq))
			}
			rep.Witnessed++
			rep.PlantHead = p.seq
		}
		if len(plant) < page {
			break
		}
	}
	if rep.LocalHead > rep.PlantHead {
		rep.Unwitnessed = rep.LocalHead - rep.PlantHead
	}
	return rep, nil
}

func findEntry(es []db.AuditEntry, seq int64) db.AuditEntry {
	if i := seq - es[0].Seq; i >= 0 && i < int64(len(es)) && es[i].Seq == seq {
		return es[i]
	}
	for _, e := range es {
		if e.Seq == seq {
			return e
		}
	}
	return db.AuditEntry{}
}
