package agent

import (
	"context"
	"errors"

	"github.com/google/go-tpm/tpm2"
)

func isLocked(err error) bool {
	return errors.Is(err, tpm2.TPMRCNVLocked) || errors.Is(err, errAnchorsLocked)
}

// SetOwnerAuth implements OwnerAuthSetter.
func (b *TPMBackend) SetOwnerAuth(_ context.Context, newAuth []byte) error {
	return b.dev.ChangeOwnerAuth(newAuth)
}

// WriteAnchors implements TrustStore.
func (b *TPMBackend) WriteAnchors(_ context.Context, enc []byte) error {
	return b.dev.WriteAnchors(enc)
}

// ReadAnchors implements TrustStore.
func (b *TPMBackend) ReadAnchors(context.Context) ([]byte, bool, error) { return b.dev.ReadAnchors() }

// LockAnchors implements TrustStore.
func (b *TPMBackend) LockAnchors(context.Context) error { return b.dev.LockAnchors() }

// Counter implements TrustStore.
func (b *TPMBackend) Counter(context.Context) (uint64, error) {
	b.waitAhead()
	return b.dev.Counter()
}

// IncrementCounter implements TrustStore.
func (b *TPMBackend) IncrementCounter(context.Context) (uint64, error) {
	b.waitAhead()
	return b.dev.IncrementCounter()
}
