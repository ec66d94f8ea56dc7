package main

import (
	"context"

	"github.com/wsc-project/wsc/station"
)

// afterPass is the bench's AfterPass for a station config: the label
// printer of its label: section, or nil without one.
func afterPass(cfg *station.FileConfig) (func(context.Context, *station.Result) error, error) {
	if cfg.Label == nil {
		return nil, nil
	}
	return station.LabelPrinter(*cfg.Label, cfg.WorkOrder.ID)
}
