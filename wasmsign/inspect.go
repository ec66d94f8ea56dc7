package wasmsign

import (
	"crypto/x509"
	"io"
)

// RecordInfo describes one signature record, without judging it.
type RecordInfo struct {
	// Algorithm is the record's alg id (AlgEd25519, AlgECDSAP256Chain or
	// an id this package does not know).
	Algorithm byte
	// KeyID is the record's key id (may be empty).
	KeyID []byte
	// Chain holds the certificates of an AlgECDSAP256Chain record that
	// parse; ChainErr is set when one does not.
	Chain    []*x509.Certificate
	ChainErr error
}

// SetInfo describes one signed hash set.
type SetInfo struct {
	// Hashes is the signed hash list.
	Hashes [][32]byte
	// MatchesModule tells whether Hashes equals the module's hash list,
	// i.e. whether the set's records can make the module valid.
	MatchesModule bool
	// Records are the set's signature records.
	Records []RecordInfo
}

// Info is what a signature section holds, for display (e.g. "wsc verify
// --show"). It carries no verdict: use Verify or VerifyEd25519 for that.
type Info struct {
	// ModuleHashes is the hash list computed from the module.
	ModuleHashes [][32]byte
	// Sets are the signed hash sets in section order.
	Sets []SetInfo
}

// Inspect parses a module (and its detached signature when detached is not
// nil) with the same strict rules as verification and describes its
// signatures without verifying them.
func Inspect(module io.Reader, detached []byte) (*Info, error) {
	src := pooledStreamSource(module)
	defer src.release()
	data, hashes, err := load(src, detached)
	if err != nil {
		return nil, err
	}
	info := &Info{ModuleHashes: hashes}
	for _, s := range data.sets {
		si := SetInfo{Hashes: s.hashes, MatchesModule: equalHashes(s.hashes, hashes)}
		for _, r := range s.records {
			ri := RecordInfo{Algorithm: r.alg, KeyID: append([]byte(nil), r.keyID...)}
			if r.alg == AlgECDSAP256Chain {
				ri.Chain, ri.ChainErr = parseChain(r.chain)
			}
			si.Records = append(si.Records, ri)
		}
		info.Sets = append(info.Sets, si)
	}
	return info, nil
}
