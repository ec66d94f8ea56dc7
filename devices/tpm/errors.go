package tpm

import "errors"

// Sentinel errors. Errors reported by the TPM itself are wrapped so that
// errors.Is(err, tpm2.TPMRCNVLocked) and similar work on them.
var (
	// ErrNoChain means no certificate chain is stored at the configured NV
	// indices.
	ErrNoChain = errors.New("no certificate chain stored")
	// ErrCorruptChain means the stored chain fails its header check (magic,
	// version, length or SHA-256), e.g. after a write interrupted by power
	// loss. Write the chain again.
	ErrCorruptChain = errors.New("stored certificate chain is corrupt")
	// ErrChainTooLarge means the chain does not fit into Config.NVMaxIndices
	// indices of TPM_PT_NV_INDEX_MAX bytes.
	ErrChainTooLarge = errors.New("certificate chain too large for the configured nv indices")
	// ErrNoKeys means IAK/IDevID have not been created yet (call CreateKeys).
	ErrNoKeys = errors.New("device keys not created")
	// ErrNoEK means the TPM has no usable endorsement key of the requested kind.
	ErrNoEK = errors.New("no endorsement key")
	// ErrHandleInUse means a configured persistent handle holds an object
	// that is not the expected key; it is left alone.
	ErrHandleInUse = errors.New("persistent handle holds a foreign object")
	// ErrUnsupportedTransport means the transport URI is unknown or not
	// available in this build (e.g. "tbs" off Windows, "sim" without the
	// tpmsim build tag).
	ErrUnsupportedTransport = errors.New("unsupported tpm transport")
)
