package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/wsc-project/wsc/devices/agent"
	"github.com/wsc-project/wsc/devices/tpm"
	"github.com/wsc-project/wsc/wasmsign"
)

// sign signs a WebAssembly module with the device key: the agent hashes the
// module, the chip signs the 32-byte digest, and the chain stored in the
// device is embedded after the signature (docs/signature-format.md).
func signFlags() (*flag.FlagSet, *backendFlags, *string) {
	fs := newFlagSet("sign")
	var bf backendFlags
	bf.register(fs)
	bf.signKey = "auto"
	fs.StringVar(&bf.policy, "policy", "", "signed PCR policy (from 'wsc policy sign') for a signing key bound to measured boot; implies --key ldevid")
	fs.StringVar(&bf.signKey, "key", "auto", "which device key signs: ldevid (the code-signing key), idevid, or auto (ldevid when its chain is installed)")
	return fs, &bf, fs.String("o", "", "signed module to write; required")
}

func sign(args []string, stdout io.Writer) error {
	fs, bf, out := signFlags()
	// Flags and the input file may come in any order ("--tpm U in.wasm -o
	// out.wasm"): parse, take a positional argument, parse the rest.
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	var in string
	if len(pos) == 1 {
		in = pos[0]
	}
	if in == "" || *out == "" {
		return usageError(errors.New("sign: want one IN.wasm and -o OUT.wasm (see 'wsc-agent sign --help')"))
	}
	module, err := os.ReadFile(in)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	backend, closer, err := bf.open()
	if err != nil {
		return err
	}
	defer closer.Close()
	ctx := context.Background()
	signDigest := backend.SignDigest
	keyName := "idevid"
	var raw [][]byte
	sk, hasSK := backend.(agent.SigningKeyStore)
	if bf.policy != "" {
		pb, err := os.ReadFile(bf.policy)
		if err != nil {
			return fmt.Errorf("sign: --policy: %w", err)
		}
		pol, err := tpm.ParseSignedPCRPolicy(pb)
		if err != nil {
			return usageError(fmt.Errorf("sign: --policy %s: %w", bf.policy, err))
		}
		ps, ok := backend.(agent.PolicySigner)
		if !ok || !hasSK {
			return usageError(errors.New("sign: --policy: this backend has no signing key bound to measured boot"))
		}
		signDigest = func(ctx context.Context, d []byte) ([]byte, error) { return ps.SignDigestWithPolicy(ctx, d, pol) }
		keyName = "ldevid (measured boot)"
		bf.signKey = "policy"
		if raw, err = sk.ReadSigningChain(ctx); err != nil {
			return fmt.Errorf("sign: read the signing key's certificate chain: %w", err)
		}
	}
	switch bf.signKey {
	case "policy":
	case "ldevid", "auto":
		if hasSK {
			raw, err = sk.ReadSigningChain(ctx)
			if err == nil {
				signDigest, keyName = sk.SignDigestWithSigningKey, "ldevid"
				break
			}
			if bf.signKey == "ldevid" || !errors.Is(err, tpm.ErrNoChain) {
				return fmt.Errorf("sign: read the signing key's certificate chain: %w", err)
			}
		} else if bf.signKey == "ldevid" {
			return usageError(errors.New("sign: --key ldevid: this backend has no separate code-signing key"))
		}
	case "idevid":
	default:
		return usageError(fmt.Errorf("sign: --key %q: want ldevid, idevid or auto", bf.signKey))
	}
	if raw == nil {
		raw, err = backend.ReadChain(ctx)
		if err != nil {
			return fmt.Errorf("sign: read the device's certificate chain: %w", err)
		}
	}
	chain := make([]*x509.Certificate, 0, len(raw))
	for _, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("sign: stored chain: %w", err)
		}
		chain = append(chain, c)
	}
	start := time.Now()
	signed, err := wasmsign.SignDigestFunc(module, func(d []byte) ([]byte, error) { return signDigest(ctx, d) }, chain, nil)
	if errors.Is(err, tpm.ErrPolicy) {
		// The PCRs do not hold the approved values, or the policy is not
		// the fleet's: a verdict on this device's state (exit 1).
		return &exitError{code: exitFailed, err: fmt.Errorf("sign: %w", err)}
	}
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	if err := os.WriteFile(*out, signed, 0o644); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	fmt.Fprintf(stdout, "signed %s -> %s by %s with the %s key (%.1f ms)\n", in, *out, chain[0].Subject.SerialNumber, keyName, float64(time.Since(start).Microseconds())/1000)
	return nil
}
