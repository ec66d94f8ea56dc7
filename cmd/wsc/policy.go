package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/wsc-project/wsc/devices/tpm"
)

func policyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Signed PCR policies for code-signing keys bound to measured boot",
	}
	cmd.AddCommand(policySignCmd())
	return cmd
}

func policySignCmd() *cobra.Command {
	var pcrList, valuesPath, keyURI, passSource, ref, out string
	cmd := &cobra.Command{
		Use:   "sign --pcrs 0,2,4,7 --values FILE --key URI --ref PRODUCT-LINE -o POLICY.json",
		Short: "Approve the PCR values of a firmware release with the fleet policy key",
		Long: `policy sign makes a signed PCR policy: devices whose code-signing key is bound to measured boot
(PolicyOR{PolicyAuthorize(fleet key, product line), PolicySecret(owner)}) sign with it only while
their PCRs hold these values ('wsc-agent sign --policy POLICY.json'). A release ships a new policy;
devices are not re-provisioned.

--values FILE is JSON mapping each PCR to its expected SHA-256 value in hex, e.g.
  {"0":"3d45...","2":"...","4":"...","7":"..."}
and must name exactly the PCRs of --pcrs. --key is the fleet policy key (encrypted PKCS#8 file or
pkcs11: URI, ECDSA P-256); --ref is the product line (at most 32 bytes).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pcrList == "" || valuesPath == "" || keyURI == "" || ref == "" || out == "" {
				return errors.New("--pcrs, --values, --key, --ref and -o are required")
			}
			var pcrs []int
			for _, f := range strings.Split(pcrList, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(f))
				if err != nil {
					return fmt.Errorf("--pcrs: %q is not a PCR number", f)
				}
				pcrs = append(pcrs, n)
			}
			slices.Sort(pcrs)
			values, err := readPCRValues(valuesPath)
			if err != nil {
				return err
			}
			got := make([]int, 0, len(values))
			for p := range values {
				got = append(got, p)
			}
			slices.Sort(got)
			if !slices.Equal(got, pcrs) {
				return fmt.Errorf("--values names PCRs %v, --pcrs says %v: they must be the same", got, pcrs)
			}
			signer, closeKey, err := openSigner(cmd.Context(), keyURI, passSource)
			if err != nil {
				return err
			}
			defer closeKey()
			pub, ok := signer.Public().(*ecdsa.PublicKey)
			if !ok {
				return errors.New("--key: the fleet policy key must be ECDSA P-256")
			}
			p, err := tpm.SignPCRPolicy(func(d []byte) ([]byte, error) { return signer.Sign(rand.Reader, d, crypto.SHA256) }, pub, values, []byte(ref))
			if err != nil {
				return err
			}
			b, err := tpm.MarshalSignedPCRPolicy(p)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed PCR policy for PCRs %v, product line %q -> %s\n", pcrs, ref, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&pcrList, "pcrs", "", "PCRs the policy covers, e.g. 0,2,4,7 (SHA-256 bank)")
	cmd.Flags().StringVar(&valuesPath, "values", "", "JSON file: expected PCR values in hex")
	cmd.Flags().StringVar(&keyURI, "key", "", "fleet policy key: an encrypted PKCS#8 file, or a pkcs11: URI")
	cmd.Flags().StringVar(&passSource, "passphrase-source", "prompt", "key file passphrase: prompt, file:PATH, fd:N, env:NAME")
	cmd.Flags().StringVar(&ref, "ref", "", "policy reference: the product line the devices were bound to")
	cmd.Flags().StringVarP(&out, "output", "o", "", "signed policy file to write")
	return cmd
}

// readPCRValues reads {"N":"hex",...} strictly.
func readPCRValues(path string) (map[int][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--values: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var raw map[string]string
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("--values %s: %w", path, err)
	}
	out := make(map[int][]byte, len(raw))
	for k, v := range raw {
		n, err := strconv.Atoi(k)
		if err != nil || n < 0 || n > 23 {
			return nil, fmt.Errorf("--values %s: %q is not a PCR number 0..23", path, k)
		}
		d, err := hex.DecodeString(v)
		if err != nil || len(d) != 32 {
			return nil, fmt.Errorf("--values %s: PCR %d: want 32 bytes of hex (SHA-256 bank)", path, n)
		}
		out[n] = d
	}
	return out, nil
}
