package qacmd

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"

	"github.com/wsc-project/wsc/cmd/internal/cli"
	"github.com/wsc-project/wsc/wasmsign"
)

// verifyMode is what `wsc verify` checks modules with: the trust bundle
// (certificate-chain records), or an Ed25519 public key (wasmsign2
// records), each with an optional detached signature.
type verifyMode struct {
	policy   *wasmsign.TrustPolicy // --trust
	edPub    ed25519.PublicKey     // --ed25519-pub
	detached []byte                // --detached SIG: the signature section payload
	sigPath  string
}

// loadVerifyMode checks the combination of --trust, --ed25519-pub,
// --detached, --at and --allow-missing-crl and reads the files they name.
// Every problem is a usage error (exit 2).
func loadVerifyMode(trustPath, edPubPath, detachedPath, at string, allowMissingCRL bool, args []string) (*verifyMode, error) {
	m := &verifyMode{sigPath: detachedPath}
	switch {
	case trustPath == "" && edPubPath == "":
		return nil, cli.Usagef("a trust anchor is required: --trust BUNDLE (certificate chains) or --ed25519-pub KEY (wasmsign2 signatures)")
	case trustPath != "" && edPubPath != "":
		return nil, cli.Usagef("--trust and --ed25519-pub exclude each other: verify one kind of signature per run")
	case edPubPath != "" && (at != "" || allowMissingCRL):
		return nil, cli.Usagef("--at and --allow-missing-crl concern certificates and CRLs: they go with --trust, not --ed25519-pub")
	case detachedPath != "" && len(args) != 1:
		return nil, cli.Usagef("--detached SIG verifies one module: give exactly one MODULE (got %d paths)", len(args))
	}
	if trustPath != "" {
		p, err := LoadPolicy(trustPath, at, allowMissingCRL)
		if err != nil {
			return nil, cli.UsageError(err)
		}
		m.policy = p
	} else {
		b, err := os.ReadFile(edPubPath)
		if err != nil {
			return nil, cli.UsageError(fmt.Errorf("ed25519 public key: %w", err))
		}
		if m.edPub, err = wasmsign.ParseEd25519PublicKey(b); err != nil {
			return nil, cli.UsageError(fmt.Errorf("%s: %w", edPubPath, err))
		}
	}
	if detachedPath != "" {
		f, err := os.Open(detachedPath)
		if err != nil {
			return nil, cli.UsageError(fmt.Errorf("detached signature: %w", err))
		}
		defer f.Close()
		// One byte more than the limit: an oversized signature is read
		// only that far and then refused by the decoder.
		if m.detached, err = io.ReadAll(io.LimitReader(f, wasmsign.MaxSignatureSectionSize+1)); err != nil {
			return nil, cli.InternalError(fmt.Errorf("detached signature: %w", err))
		}
		if m.detached == nil {
			m.detached = []byte{}
		}
		if st, err := os.Stat(args[0]); err != nil {
			return nil, cli.UsageError(fmt.Errorf("module: %w", err))
		} else if st.IsDir() {
			return nil, cli.Usagef("--detached SIG verifies one module file; %s is a folder", args[0])
		}
	}
	return m, nil
}

// verify verifies the modules under paths in this mode.
func (m *verifyMode) verify(ctx context.Context, paths []string, workers int, prog func(done, total int)) ([]wasmsign.Result, error) {
	if m.detached == nil {
		if m.policy != nil {
			return wasmsign.BatchVerify(ctx, paths, m.policy, workers, prog)
		}
		return wasmsign.BatchVerifyEd25519(ctx, paths, m.edPub, prog)
	}
	// A detached signature covers one module.
	path := paths[0]
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var res *wasmsign.Result
	if m.policy != nil {
		v, err := wasmsign.NewVerifier(m.policy)
		if err != nil {
			return nil, cli.UsageError(err)
		}
		res, _ = v.VerifyDetached(f, m.detached)
	} else {
		res, _ = wasmsign.VerifyEd25519Reader(f, m.detached, m.edPub)
	}
	res.File = path
	if prog != nil {
		prog(1, 1)
	}
	return []wasmsign.Result{*res}, nil
}
