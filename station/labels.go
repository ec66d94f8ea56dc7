package station

import (
	"context"
	"errors"
	"time"

	"github.com/wsc-project/wsc/station/label"
)

// LabelPrinter returns a BenchConfig.AfterPass that prints the label of
// every device that passed: serial, the work order workOrder names at that
// moment (a bench can switch work orders), date and a QR code of the serial
// and the certificate's SHA-256 fingerprint.
func LabelPrinter(cfg label.Config, workOrder func() string) (func(context.Context, *Result) error, error) {
	p, err := label.NewPrinter(cfg)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, r *Result) error {
		if r == nil || len(r.Chain) == 0 {
			return errors.New("label: no certificate to print")
		}
		return p.Print(ctx, label.Label{Serial: r.Serial, WorkOrder: workOrder(), Date: time.Now(),
			Fingerprint: label.Fingerprint(r.Chain[0].Raw)})
	}, nil
}
