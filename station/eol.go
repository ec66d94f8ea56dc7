package station

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/wasmsign"
)

// eolModule is a minimal WebAssembly module, (func (export "answer")
// (result i32) i32.const 42), followed by a custom section "wsc-eol" that
// carries the run's nonce so that every device signs a different module.
func eolModule(nonce []byte) []byte {
	m := []byte{
		0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
		0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, // type: () -> i32
		0x03, 0x02, 0x01, 0x00, // function 0 has type 0
		0x07, 0x0a, 0x01, 0x06, 'a', 'n', 's', 'w', 'e', 'r', 0x00, 0x00, // export "answer"
		0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x2a, 0x0b, // code: i32.const 42
	}
	name := "wsc-eol"
	m = append(m, 0x00, byte(1+len(name)+len(nonce)), byte(len(name)))
	m = append(m, name...)
	return append(m, nonce...)
}

// CATrust is what an issuer that can tell its own trust anchors offers.
type CATrust interface {
	Roots() []*x509.Certificate
	Intermediates() []*x509.Certificate
}

// eolPolicy is the policy the end-of-line check verifies with: the CA's
// own roots and intermediates, now, code-signing EKU (wasmsign's rules).
func (p *Provisioner) eolPolicy() (*wasmsign.TrustPolicy, error) {
	if p.cfg.EOLTrust != nil {
		return p.cfg.EOLTrust, nil
	}
	t, ok := p.cfg.Issuer.(CATrust)
	if !ok {
		return nil, errors.New("no trust policy for the end-of-line check: the issuer does not expose its roots")
	}
	// AllowMissingCRL, explicitly: the end-of-line check proves that the
	// chip signs with the key the CA certified seconds ago, under the CA's
	// own anchors; it holds no CRLs. Revocation is checked by QA against a
	// bundle from `wsc ca bundle`, which fails closed without CRLs.
	return &wasmsign.TrustPolicy{Roots: t.Roots(), Intermediates: t.Intermediates(), AllowMissingCRL: true}, nil
}

// endOfLine has the device sign a test module with its hardware key (the
// station hashes, the chip signs the digest) and verifies the signed module
// and its embedded chain as QA will verify firmware.
func (r *run) endOfLine(ctx context.Context, c *proto.Client, nonce []byte, chain []*x509.Certificate) error {
	pol, err := r.p.eolPolicy()
	if err != nil {
		return err
	}
	module := eolModule(nonce)
	signed, err := wasmsign.SignDigestFunc(module, func(d []byte) ([]byte, error) {
		got, err := c.SignDigest(ctx, proto.SignDigestRequest{Digest: d})
		if err != nil {
			return nil, err
		}
		return got.Signature, nil
	}, chain, nil)
	if err != nil {
		return fmt.Errorf("%w: sign test module: %w", ErrEndOfLine, err)
	}
	return r.checkEOLModule(signed, pol, "signed test module")
}

// checkEOLModule verifies the end-of-line module the device signed as QA
// verifies firmware (what names the key in the error) and that it names this
// device, then keeps it in the configured folder.
func (r *run) checkEOLModule(signed []byte, pol *wasmsign.TrustPolicy, what string) error {
	if err := r.verifyEOLModule(signed, pol, what); err != nil {
		return err
	}
	return r.keepEOLModule(signed)
}

// verifyEOLModule is checkEOLModule's verification.
func (r *run) verifyEOLModule(signed []byte, pol *wasmsign.TrustPolicy, what string) error {
	res, err := wasmsign.Verify(signed, pol)
	if err != nil {
		return fmt.Errorf("%w: verify %s: %w", ErrEndOfLine, what, err)
	}
	if res.DeviceSerial != r.serial {
		return fmt.Errorf("%w: module signed by %q, expected %q", ErrEndOfLine, res.DeviceSerial, r.serial)
	}
	return nil
}

// keepEOLModule keeps a verified end-of-line module in the configured
// folder.
func (r *run) keepEOLModule(signed []byte) error {
	if dir := r.p.cfg.EOLModuleDir; dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, r.serial+".wasm"), signed, 0o644); err != nil {
			return fmt.Errorf("keep signed test module: %w", err)
		}
	}
	return nil
}
