package main

import (
	"fmt"
	"io"

	"github.com/wsc-project/wsc/station"
)

// checkConfig validates a station configuration file and prints each
// problem as FILE:LINE: message (exit 2 when there is one), or a one-line
// summary of what the file sets up.
func checkConfig(out io.Writer, path string) error {
	cfg, errs := station.CheckConfig(path)
	for _, e := range errs {
		if e.Line > 0 {
			fmt.Fprintf(out, "%s:%d: %v\n", path, e.Line, e.Err)
		} else {
			fmt.Fprintf(out, "%s: %v\n", path, e.Err)
		}
	}
	if len(errs) > 0 {
		return usagef("%s: %d problem(s); see docs/station-config.md", path, len(errs))
	}
	slots := fmt.Sprintf("%d slots", len(cfg.Slots))
	if len(cfg.Slots) == 0 {
		slots = "slots discovered at start"
	}
	fmt.Fprintf(out, "%s: ok — station %s, work order %s (quantity %d, proofs %v), %s\n", path, cfg.Station, cfg.WorkOrder.ID, cfg.WorkOrder.Quantity, cfg.WorkOrder.Proofs, slots)
	return nil
}
