package main

import (
	"context"
	"errors"
)

// runStationTUI runs the operator view.
func runStationTUI(ctx context.Context, l *line) error {
	return errors.New("the operator view is not wired yet: use --headless")
}
