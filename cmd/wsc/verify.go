package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/cmd/internal/qacmd"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/wasmsign"
)

// verifyCmd is `wsc verify` (cmd/internal/qacmd, shared with the lean
// front binary), with --db recording in the station database.
func verifyCmd() *cobra.Command { return qacmd.VerifyCmd(qacmd.Options{Record: recordVerifications}) }

// qaCmd is `wsc qa` (cmd/internal/qacmd).
func qaCmd() *cobra.Command { return qacmd.QACmd() }

func recordVerifications(ctx context.Context, out io.Writer, path, verifier string, results []wasmsign.Result) error {
	s, err := db.Open(path, db.WithActor(verifier))
	if err != nil {
		return err
	}
	defer s.Close()
	skipped := 0
	for _, r := range results {
		if r.DeviceSerial == "" {
			skipped++
			continue
		}
		if _, err := s.GetDevice(ctx, r.DeviceSerial); errors.Is(err, db.ErrNotFound) {
			// Not a device of this station: nothing to attach the result to.
			skipped++
			continue
		} else if err != nil {
			return err
		}
		v := db.Verification{DeviceSerial: r.DeviceSerial, CertSerialHex: r.SignerSerial, Verifier: verifier, Result: db.VerifyPass, Detail: r.File}
		if r.Status != wasmsign.StatusValid {
			v.Result, v.Detail = db.VerifyFail, r.File+": "+r.Reason
		} else if r.RevocationUnchecked {
			v.Detail = r.File + ": " + r.Warning
		}
		if _, err := s.RecordVerification(ctx, v); err != nil {
			return fmt.Errorf("record verification of %s: %w", r.File, err)
		}
	}
	if skipped > 0 {
		fmt.Fprintf(out, "%d results not recorded: their signer is not a device of this station's database\n", skipped)
	}
	return nil
}
