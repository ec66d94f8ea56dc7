package main

import (
	"context"

	"github.com/wsc-project/wsc/station"
)

// afterPass is the bench's AfterPass for a line: the label printer of its
// config's label: section (labels name the line's current work order), or
// nil without one.
func afterPass(l *line) (func(context.Context, *station.Result) error, error) {
	if l.cfg.Label == nil {
		return nil, nil
	}
	return station.LabelPrinter(*l.cfg.Label, l.workOrder)
}
