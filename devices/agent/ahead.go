package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"sync"
)

// Work made ahead. A TPM is slow (an SLB9670 needs 231 ms for a key, about
// 69 ms per signature or NV command) and the serial line is slow too: while
// the station checks an answer and sends its next request, the chip would
// sit idle. Asked in CreateKeys, the agent uses that time for work whose
// inputs it already has — the code-signing key created and certified over
// the keys' nonce, the anti-rollback counter defined, incremented and read —
// and hands the results over when the station asks for them. Requests go
// first: between its TPM operations the work ahead waits while a request
// is being served, unless that request waits for the work itself.

// Preparer is the optional capability of backends that make work ahead
// (Hello capabilities "signing-key-ahead", "counter-ahead").
type Preparer interface {
	// PrepareAhead starts, in the background, the signing key (when
	// signing: created and certified over nonce with the binding
	// fleet/policyRef) and the counter set-up (when counter).
	PrepareAhead(a Ahead)
}

// Ahead is what a CreateKeys request asks to be made ahead.
type Ahead struct {
	SigningKey bool
	Nonce      []byte
	Fleet      *ecdsa.PublicKey
	PolicyRef  []byte
	Counter    bool
}

// aheadJob is work being made ahead and its results (TPMBackend.aheadMu
// guards the taken flags and wanted).
type aheadJob struct {
	Ahead
	// keyDone is closed when the signing key is made (or failed), done
	// when all of the job is.
	keyDone, done chan struct{}
	// wanted: a request waits for the job; it no longer yields.
	wanted bool

	ev       *SigningKeyEvidence
	evErr    error
	evTaken  bool
	counter  uint64
	cErr     error
	cntTaken bool
}

func (a *aheadJob) matches(nonce []byte, fleet *ecdsa.PublicKey, policyRef []byte) bool {
	if !a.SigningKey || !bytes.Equal(a.Nonce, nonce) || !bytes.Equal(a.PolicyRef, policyRef) || (a.Fleet == nil) != (fleet == nil) {
		return false
	}
	return fleet == nil || a.Fleet.Equal(fleet)
}

// PrepareAhead implements Preparer.
func (b *TPMBackend) PrepareAhead(req Ahead) {
	req.Nonce, req.PolicyRef = bytes.Clone(req.Nonce), bytes.Clone(req.PolicyRef)
	a := &aheadJob{Ahead: req, keyDone: make(chan struct{}), done: make(chan struct{})}
	b.aheadMu.Lock()
	prev := b.ahead
	b.ahead = a
	b.aheadMu.Unlock()
	go func() {
		defer close(a.done)
		if prev != nil {
			<-prev.done
		}
		yield := func() { b.yield(a) }
		if a.SigningKey {
			a.ev, a.evErr = b.createSigningKey(a.Nonce, a.Fleet, a.PolicyRef, yield)
		}
		close(a.keyDone)
		if a.Counter {
			yield()
			if a.cErr = b.dev.PrepareCounter(); a.cErr == nil {
				yield()
				a.counter, a.cErr = b.dev.Counter()
			}
		}
	}()
}

// foreground marks a request being served until the returned function is
// called.
func (b *TPMBackend) foreground() (done func()) {
	b.aheadMu.Lock()
	b.fg++
	b.aheadMu.Unlock()
	return func() {
		b.aheadMu.Lock()
		b.fg--
		b.fgFree().Broadcast()
		b.aheadMu.Unlock()
	}
}

// fgFree is signalled when no request is being served or a job becomes
// wanted (aheadMu held).
func (b *TPMBackend) fgFree() *sync.Cond {
	if b.fgCond == nil {
		b.fgCond = sync.NewCond(&b.aheadMu)
	}
	return b.fgCond
}

// yield waits, before a's next TPM operation, until no request is being
// served, unless a request waits for a itself.
func (b *TPMBackend) yield(a *aheadJob) {
	b.aheadMu.Lock()
	for b.fg > 0 && !a.wanted {
		b.fgFree().Wait()
	}
	b.aheadMu.Unlock()
}

// waitAhead waits for the work made ahead, if any, to finish (it is then
// wanted: it stops yielding) and returns it.
func (b *TPMBackend) waitAhead() *aheadJob { return b.awaitAhead(false) }

// waitAheadKey is waitAhead for the signing key only.
func (b *TPMBackend) waitAheadKey() *aheadJob { return b.awaitAhead(true) }

func (b *TPMBackend) awaitAhead(keyOnly bool) *aheadJob {
	b.aheadMu.Lock()
	a := b.ahead
	if a != nil {
		a.wanted = true
		b.fgFree().Broadcast()
	}
	b.aheadMu.Unlock()
	switch {
	case a == nil:
	case keyOnly:
		<-a.keyDone
	default:
		<-a.done
	}
	return a
}

// resetAhead waits for the work made ahead and forgets it (the keys it
// made are about to be removed).
func (b *TPMBackend) resetAhead() {
	a := b.waitAhead()
	b.aheadMu.Lock()
	if b.ahead == a {
		b.ahead = nil
	}
	b.aheadMu.Unlock()
}

// takeAheadKey hands over, once, a signing key made ahead for this nonce
// and binding (nil when there is none).
func (b *TPMBackend) takeAheadKey(nonce []byte, fleet *ecdsa.PublicKey, policyRef []byte) *SigningKeyEvidence {
	a := b.waitAheadKey()
	if a == nil {
		return nil
	}
	b.aheadMu.Lock()
	defer b.aheadMu.Unlock()
	if a.evTaken || a.evErr != nil || a.ev == nil || !a.matches(nonce, fleet, policyRef) {
		return nil
	}
	a.evTaken = true
	return a.ev
}

// takeAheadCounter hands over, once, the counter value read ahead.
func (b *TPMBackend) takeAheadCounter() (uint64, bool) {
	a := b.waitAhead()
	if a == nil {
		return 0, false
	}
	b.aheadMu.Lock()
	defer b.aheadMu.Unlock()
	if !a.Counter || a.cntTaken || a.cErr != nil {
		return 0, false
	}
	a.cntTaken = true
	return a.counter, true
}

// SetupCounter implements TrustStore: the value read ahead when there is
// one (nothing can have changed the counter since: every command that
// could waits for the work made ahead), else the counter is set up now.
func (b *TPMBackend) SetupCounter(context.Context) (uint64, error) {
	if v, ok := b.takeAheadCounter(); ok {
		return v, nil
	}
	return b.dev.SetupCounter()
}
