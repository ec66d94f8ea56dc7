package station

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/tpm"
	"github.com/wsc-project/wsc/wasmsign"
)

// The end-of-line steps of issue 15, run inside the one provisioning
// sequence (provision.go calls them): the device's code-signing key
// (LDevID), the end-of-line check signed with it, and the firmware trust
// anchors with the sealed owner authorisation.

// Signing-key policies (TrustConfig.SigningKey).
const (
	// SigningKeyAuto is the IEEE 802.1AR default: a TPM device that
	// announces the "signing-key" capability gets a separate code-signing
	// key (LDevID, codeSigning only) and its identity certificate keeps
	// clientAuth only. Other devices sign with their IDevID.
	SigningKeyAuto = "auto"
	// SigningKeyOff: every device signs with its IDevID (the profile's EKUs).
	SigningKeyOff = "off"
)

// TrustConfig is what a work order says about signing keys and firmware
// trust. The zero value is the 802.1AR default with no firmware trust.
type TrustConfig struct {
	// SigningKey is SigningKeyAuto ("" means it) or SigningKeyOff.
	SigningKey string
	// Firmware, when set, is written into devices that announce the
	// "trust-anchors" capability, write-locked, after the end-of-line
	// check.
	Firmware *FirmwareTrust
	// OwnerAuth is how a TPM's owner authorisation is set before the
	// anchors are locked with it (required with Firmware for TPMs).
	OwnerAuth OwnerAuthPolicy
	// MeasuredBoot, when set, binds every device's code-signing key to
	// measured boot (needs SigningKey auto): a device that cannot have
	// such a key is refused at Hello, before it makes any key.
	MeasuredBoot *MeasuredBoot
}

// Check refuses a configuration the sequence cannot honour.
func (t TrustConfig) Check() error {
	switch t.SigningKey {
	case "", SigningKeyAuto, SigningKeyOff:
	default:
		return fmt.Errorf("signing_key %q: want auto or off", t.SigningKey)
	}
	if t.MeasuredBoot != nil {
		if t.SigningKey == SigningKeyOff {
			return errors.New("measured_boot binds the code-signing key, but signing_key is off: remove measured_boot or set signing_key: auto")
		}
		if err := t.MeasuredBoot.Check(); err != nil {
			return fmt.Errorf("measured_boot: %w", err)
		}
	}
	if t.OwnerAuth.Escrow != nil && t.OwnerAuth.None {
		return errors.New("owner_auth: give either escrow_public_key or policy: none, not both")
	}
	if t.Firmware != nil {
		if len(t.Firmware.Roots) == 0 || len(t.Firmware.Roots) > 8 {
			return fmt.Errorf("firmware_trust: %d roots, want 1 to 8", len(t.Firmware.Roots))
		}
		if t.Firmware.DeviceClass == "" {
			return errors.New("firmware_trust: device_class is empty")
		}
		if _, err := t.Firmware.Policy(0); err != nil {
			return err
		}
		if t.OwnerAuth.Escrow == nil && !t.OwnerAuth.None {
			return errors.New("firmware_trust needs owner_auth: an escrow_public_key (the owner authorisation is sealed to it) or an explicit policy: none")
		}
	}
	return nil
}

// The issue-15 steps; on the operator's progress bar they count as the
// step they belong to (subStepOf).
const (
	// StepSigningKey creates, certifies and installs the code-signing key.
	StepSigningKey Step = "signing-key"
	// StepAnchors seals and sets the owner authorisation and writes,
	// locks and reads back the firmware trust anchors.
	StepAnchors Step = "anchors"
)

// subStepOf maps the issue-15 steps to the step of Steps they show as.
var subStepOf = map[Step]Step{StepSigningKey: StepReadBack, StepAnchors: StepEOL}

// The named fault points of the issue-15 steps (Config.FaultPoint), in
// order. They are not in FaultPoints: they are reached only when the
// device and the work order ask for them.
const (
	FaultSigningKey      = "after-signing-key"       // signing certificate issued, recorded and installed; end-of-line module signed, not verified
	FaultOwnerAuthSealed = "after-owner-auth-sealed" // owner authorisation sealed and recorded, not set on the chip
	FaultAnchors         = "after-anchors"           // anchors written, locked and read back; certificates not confirmed
)

// TrustFaultPoints lists the issue-15 fault points in order.
var TrustFaultPoints = []string{FaultSigningKey, FaultOwnerAuthSealed, FaultAnchors}

// Hello capabilities of the issue-15 steps.
const (
	capSigningKey   = "signing-key"
	capTrustAnchors = "trust-anchors"
)

// trustRun is a run's issue-15 state.
type trustRun struct {
	// signing: this device gets an LDevID (decided at Hello).
	signing bool
	// ev is the created and checked signing key; issuing its issuance,
	// which runs while the device signs the end-of-line module.
	ev      *signingEvidence
	issuing *async
	// issued is the signing certificate this run signed or re-delivered
	// (set by the issuance; read after settleSigning).
	issued string
	// issuedChain is what the CA returned; chain the signing key's chain
	// once installed.
	issuedChain, chain []*x509.Certificate
	// aheadNonce is the keys' nonce when the device was asked to make its
	// signing key ahead (certified over it); nil: a fresh nonce.
	aheadNonce []byte
	// mb is the measured-boot binding of the signing key (nil: none); the
	// end-of-line module is then signed through the owner branch.
	mb *MeasuredBoot
}

// capSigningKeyAhead is the Hello capability of an agent that makes its
// signing key in the background after CreateKeys.
const capSigningKeyAhead = "signing-key-ahead"

// capCounterAhead is the Hello capability of an agent that sets up its
// anti-rollback counter in the background after CreateKeys.
const capCounterAhead = "counter-ahead"

// signingKeyAhead returns how the keys request asks a device that can for
// its signing key ahead (nil when it does not get one or cannot): the chip
// creates and certifies it over the keys' nonce while the line carries the
// credential activation and the identity chain, and signingKeyStep
// collects it. The evidence is checked exactly as for a key made on
// request.
func (r *run) signingKeyAhead(hello *proto.HelloResponse, nonce []byte) func(*proto.CreateKeysRequest) {
	key := r.trust.signing && hasCap(hello.Capabilities, capSigningKeyAhead)
	// The counter's first value goes into the anchors: a device that will
	// get them sets its counter up while the line is busy too.
	counter := r.p.cfg.Trust.Firmware != nil && r.proof == ca.ProofTPM && hasCap(hello.Capabilities, capTrustAnchors) &&
		hasCap(hello.Capabilities, capCounterAhead)
	var fleet, ref []byte
	if mb := r.measuredBoot(); key && mb != nil {
		// The key made ahead carries the binding (its policy is part of
		// what the IAK certifies).
		der, err := x509.MarshalPKIXPublicKey(mb.FleetKey)
		if err != nil {
			key = false // made on request instead, where the error is reported
		}
		fleet, ref = der, mb.PolicyRef
	}
	if !key && !counter {
		return nil
	}
	return func(req *proto.CreateKeysRequest) {
		req.SigningKeyAhead, req.CounterAhead = key, counter
		if key {
			req.FleetKey, req.PolicyRef = fleet, ref
			r.trust.aheadNonce = nonce
		}
	}
}

// ErrMeasuredBootUnsupported: the work order binds code-signing keys to
// measured boot and the device cannot have such a key (not a TPM, or an
// agent without the "signing-key" or the "signing-key-policy" capability).
// It is refused at Hello, before it makes any key; the error also wraps
// ErrNoProof (reason code no-proof).
var ErrMeasuredBootUnsupported = errors.New("the device cannot bind a signing key to measured boot")

// measuredBootGate refuses, right after Hello and before the device makes
// any key, a device that cannot honour the work order's measured-boot
// binding: its firmware would otherwise be signed by a key that is not
// bound (fail closed). The refusal goes to the ledger (attest.fail), as
// any device that cannot give what the work order demands.
func (r *run) measuredBootGate(ctx context.Context, hello *proto.HelloResponse) error {
	if r.p.cfg.Trust.MeasuredBoot == nil {
		return nil
	}
	var why string
	switch {
	case r.proof != ca.ProofTPM:
		why = fmt.Sprintf("its proof is %s, and only a TPM binds a key to its PCRs", r.proof)
	case !hasCap(hello.Capabilities, capSigningKey):
		why = "its agent has no separate code-signing key (no signing-key capability)"
	case !hasCap(hello.Capabilities, proto.CapSigningKeyPolicy):
		why = "its agent cannot bind the signing key or sign through the owner branch (no signing-key-policy capability)"
	default:
		return nil
	}
	err := fmt.Errorf("%w: %w: this work order binds code-signing keys to measured boot; %s", ErrNoProof, ErrMeasuredBootUnsupported, why)
	r.recordAttestFailure(ctx, err)
	return &StepError{Step: StepHello, Err: err,
		Instruction: fmt.Sprintf("The device on slot %d cannot bind its code-signing key to measured boot, which this work order requires: update its agent (a wsc-agent that announces signing-key-policy) or ask the shift lead for the right work order, then retry. No key was made.", r.job.Slot)}
}

// measuredBoot is the work order's binding with the profile's OID arc
// (nil when the work order has none).
func (r *run) measuredBoot() *MeasuredBoot {
	mb := r.p.cfg.Trust.MeasuredBoot
	if mb == nil {
		return nil
	}
	out := *mb
	if p := r.p.cfg.Profile; p != nil && p.OIDArc != "" && len(out.OIDArc) == 0 {
		out.OIDArc = parseArc(p.OIDArc)
	}
	return &out
}

// parseArc parses a dotted OID (nil if it is not one; a loaded profile's
// arc always is).
func parseArc(s string) asn1.ObjectIdentifier {
	var oid asn1.ObjectIdentifier
	for _, f := range strings.Split(s, ".") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil
		}
		oid = append(oid, n)
	}
	return oid
}

// recordSigningPolicy wraps the signing key's issuance: once the
// certificate is issued (or re-delivered), the binding — policy digest,
// fleet key Name, policy reference, PCR selection, the extension's OID —
// goes to the ledger with the certificate's serial (signing_key.policy).
func (r *run) recordSigningPolicy(ctx context.Context, mb *MeasuredBoot, policy []byte, issue signingIssueFunc) signingIssueFunc {
	return func(csrDER []byte, csr *x509.CertificateRequest, req ca.IssueRequest) ([]*x509.Certificate, error) {
		chain, err := issue(csrDER, csr, req)
		if err != nil {
			return nil, err
		}
		name, err := tpm.FleetKeyName(mb.FleetKey)
		if err != nil {
			return nil, err
		}
		if err := r.p.cfg.Store.Audit(ctx, "signing_key.policy", r.p.currentOperator(), map[string]any{"device": r.serial, "run": r.runID,
			"certificate": SerialHex(chain[0]), "policy_digest": hex.EncodeToString(policy), "fleet_key_name": hex.EncodeToString(name),
			"policy_ref": string(mb.PolicyRef), "pcrs": mb.PCRs, "extension": MeasuredBootOID(mb.OIDArc).String()}); err != nil {
			return nil, fmt.Errorf("record the signing key's measured-boot policy: %w", err)
		}
		return chain, nil
	}
}

// wantsSigningKey decides, from the work order and the Hello, whether the
// device gets a separate code-signing key. Only a TPM device proven by its
// EK and IAK can have one: the LDevID is certified by the same IAK.
func (r *run) wantsSigningKey(hello *proto.HelloResponse, proof string) bool {
	return r.p.cfg.Trust.SigningKey != SigningKeyOff && proof == ca.ProofTPM && hasCap(hello.Capabilities, capSigningKey)
}

// idevidEKUs is the identity certificate's EKU set: clientAuth only when
// the device gets a signing key; otherwise the profile's (nil). A secure
// element keeps the profile's codeSigning on its IDevID and signs firmware
// with it: its storage layout holds one device certificate (compressed,
// slot 10, rebuilt from the maker's template) and its agent offers no
// second certified key (no "signing-key" capability). A second key would
// need another private-key slot, its own in-chip attestation and a second
// compressed certificate; until then the one attested key signs, and the
// certificate that names it must say so.
func (r *run) idevidEKUs() []x509.ExtKeyUsage {
	if r.trust.signing {
		return IDevIDExtKeyUsages
	}
	return nil
}

// signingKeyStep gives a TPM device its code-signing key, after the
// identity chain was installed: the device creates it and certifies it
// with its IAK over a fresh nonce (or hands over the key it made ahead,
// certified over the keys' nonce), the station checks that evidence, and
// the CA's certificate (recorded as a certificate of role ldevid, linked
// to the device and run) is issued while the device reads its identity
// chain back and signs the end-of-line module with the key; eolCheck
// installs the chain.
func (r *run) signingKeyStep(ctx context.Context, hello *proto.HelloResponse, proven *Proven) error {
	if !r.trust.signing {
		return nil
	}
	cfg := r.p.cfg
	return r.do(ctx, StepSigningKey, func() error {
		if proven.Keys == nil || len(proven.Keys.IAKPublic) == 0 {
			return fmt.Errorf("%w: the device proved no attestation key to certify its signing key with", ErrSigningKey)
		}
		nonce := r.trust.aheadNonce
		if nonce == nil {
			var err error
			if nonce, err = newNonce(); err != nil {
				return err
			}
		}
		req := ca.IssueRequest{DeviceSerial: r.serial, Validity: cfg.Validity, Profile: cfg.Profile, Proof: r.proof,
			Model: hello.Model, Backend: hello.Backend, WorkOrder: cfg.WorkOrder, RunID: r.runID}
		if cfg.NamesFor != nil {
			req.Names = cfg.NamesFor(r.serial)
		}
		mb := r.measuredBoot()
		sr, err := requestSigningKey(ctx, r.client, nonce, req, mb)
		if err != nil {
			return err
		}
		r.trust.mb = mb
		// The station checks the device's evidence and the CA certifies
		// the key (two durable records and a signature, ≈ 2 ms) while the
		// device signs the end-of-line module with it (eolCheck): the
		// station's own time stays off the device's path. Nothing the
		// device signs is used before both are done (settleSigning).
		iak, idevid := proven.Keys.IAKPublic, proven.CSR.PublicKey
		issue := r.issueSigning(ctx)
		if mb != nil {
			issue = r.recordSigningPolicy(ctx, mb, sr.wantPolicy, issue)
		}
		r.trust.issuing = goAsync(func() error {
			ev, err := sr.check(iak, idevid)
			if err != nil {
				return err
			}
			r.trust.ev = ev
			chain, err := ev.issue(issue)
			r.trust.issuedChain = chain
			return err
		})
		return nil
	})
}

// settleSigning waits for the signing key's issuance (nil when none runs).
func (r *run) settleSigning() error {
	if r.trust.issuing == nil {
		return nil
	}
	return r.trust.issuing.wait()
}

// issueSigning records the intent (role ldevid) and has the CA sign, or
// re-delivers the certificate the key already has.
func (r *run) issueSigning(ctx context.Context) signingIssueFunc {
	cfg := r.p.cfg
	return func(csrDER []byte, csr *x509.CertificateRequest, req ca.IssueRequest) ([]*x509.Certificate, error) {
		intent, existing, err := cfg.Store.BeginIssue(ctx, db.IssueIntent{DeviceSerial: r.serial, KeyPublicDER: csr.RawSubjectPublicKeyInfo,
			WorkOrder: cfg.WorkOrder, RunID: r.runID, Proof: r.proof, ChipID: r.chipID, Role: db.RoleLDevID})
		if err != nil {
			return nil, fmt.Errorf("record signing-key intent: %w", err)
		}
		if existing != nil {
			chain, err := parseChain(existing)
			if err != nil {
				return nil, err
			}
			r.trust.issued = SerialHex(chain[0])
			return chain, nil
		}
		req.IntentID = intent
		chain, err := cfg.Issuer.Issue(ctx, csrDER, req)
		if err != nil {
			return nil, err
		}
		if len(chain) == 0 {
			return nil, errors.New("the CA returned no certificate")
		}
		leaf := chain[0]
		r.trust.issued = SerialHex(leaf)
		// The CA completed the intent inside its signature (one issuance
		// path: NewProvisioner accepts only a recording issuer).
		return chain, nil
	}
}

// eolCheck is the end-of-line signature check: with the signing key when
// the device has one (its chain must carry codeSigning), else with the
// IDevID (endOfLine).
func (r *run) eolCheck(ctx context.Context, c *proto.Client, nonce []byte, idChain []*x509.Certificate) error {
	if r.trust.issuing == nil {
		return r.endOfLine(ctx, c, nonce, idChain)
	}
	pol, err := r.p.eolPolicy()
	if err != nil {
		_ = r.settleSigning()
		return err
	}
	// The device signs while the CA certifies its key. The signed message
	// does not cover the chain: wasmsign hands over its digest (taken here
	// under the identity chain and stopped there), the device signs it,
	// and the signature is embedded under the issued chain below, where
	// wasmsign checks it against the signing key.
	module := eolModule(nonce)
	var digest []byte
	if _, err := wasmsign.SignDigestFunc(module, func(d []byte) ([]byte, error) {
		digest = bytes.Clone(d)
		return nil, errDigestTaken
	}, idChain, nil); !errors.Is(err, errDigestTaken) {
		_ = r.settleSigning()
		return fmt.Errorf("%w: digest of the test module: %w", ErrEndOfLine, err)
	}
	var resp proto.SignDigestResponse
	if mb := r.trust.mb; mb != nil {
		// A key bound to measured boot refuses password use: it signs
		// through PolicySecret(owner), with the owner authorisation the
		// agent holds (the chip's, before anchorsStep seals a new one).
		err = signWithOwnerPolicy(ctx, c, digest, mb, &resp)
	} else {
		err = c.Call(ctx, proto.MsgSignWithSigningKey, proto.SignDigestRequest{Digest: digest}, &resp)
	}
	if serr := r.settleSigning(); serr != nil {
		return serr
	}
	if err != nil {
		return fmt.Errorf("%w: sign test module with the signing key: %w", ErrEndOfLine, err)
	}
	sig := resp.Signature
	signed, err := wasmsign.SignDigestFunc(module, func(d []byte) ([]byte, error) {
		if !bytes.Equal(d, digest) {
			return nil, errors.New("the module's signed message changed")
		}
		return sig, nil
	}, r.trust.issuedChain, nil)
	if err != nil {
		return fmt.Errorf("%w: embed the signing key's chain: %w", ErrEndOfLine, err)
	}
	// wasmsign requires codeSigning on the leaf: the LDevID chain is
	// verified as QA verifies firmware, while the device stores it (the
	// chain it stored is compared with the one verified, by its SHA-256).
	verified := goAsync(func() error { return r.verifyEOLModule(signed, pol, "test module signed with the signing key") })
	inst, err := r.trust.ev.install(ctx, c, r.trust.issuedChain, r.p.cfg.Lock)
	verr := verified.wait()
	if err != nil {
		return err
	}
	r.trust.chain = inst.Chain
	if err := r.faultErr(FaultSigningKey); err != nil {
		return err
	}
	if verr != nil {
		return verr
	}
	return r.keepEOLModule(signed)
}

// signWithOwnerPolicy has a signing key bound to mb sign digest through
// its owner branch (MsgSignWithOwnerPolicy).
func signWithOwnerPolicy(ctx context.Context, c *proto.Client, digest []byte, mb *MeasuredBoot, resp *proto.SignDigestResponse) error {
	der, err := x509.MarshalPKIXPublicKey(mb.FleetKey)
	if err != nil {
		return fmt.Errorf("fleet key: %w", err)
	}
	return c.Call(ctx, proto.MsgSignWithOwnerPolicy, proto.SignWithOwnerPolicyRequest{Digest: digest, FleetKey: der, PolicyRef: mb.PolicyRef}, resp)
}

// anchorsStep installs the work order's firmware trust into a device that
// announced "trust-anchors", in the same agent session: for a TPM it first
// seals the new owner authorisation to the escrow key and records it, then
// sets it (or records the explicit policy none); then the anchors are
// written, locked and read back, and their digest and policy version go
// to the ledger.
func (r *run) anchorsStep(ctx context.Context, hello *proto.HelloResponse) error {
	ft := r.p.cfg.Trust.Firmware
	if ft == nil || !hasCap(hello.Capabilities, capTrustAnchors) {
		return nil
	}
	return r.do(ctx, StepAnchors, func() error {
		if r.proof == ca.ProofTPM {
			if err := r.ownerAuth(ctx); err != nil {
				return err
			}
		}
		res, err := InstallFirmwareTrust(ctx, r.client, ft, nil)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(res.Anchors)
		if err := r.p.cfg.Store.Audit(ctx, "trust.anchors", r.p.currentOperator(), map[string]any{"device": r.serial, "run": r.runID,
			"anchors_sha256": hex.EncodeToString(sum[:]), "policy_version": ft.PolicyVersion, "device_class": ft.DeviceClass,
			"counter_base": res.CounterBase, "locked": true}); err != nil {
			return fmt.Errorf("record anchors: %w", err)
		}
		return r.faultErr(FaultAnchors)
	})
}

// ownerAuth seals, records, then sets a new owner authorisation, or
// records the policy none. A device whose TPM already holds an owner
// authorisation this station sealed (an earlier run, a rework) is refused:
// the station cannot open it, only the RMA desk with the escrow key can —
// unless a supervisor's rework says the chip was reset (TPM2_Clear) at
// the RMA desk, which is recorded.
func (r *run) ownerAuth(ctx context.Context) error {
	pol := r.p.cfg.Trust.OwnerAuth
	st, ok := r.p.cfg.Store.(ownerAuthStore)
	if !ok {
		return fmt.Errorf("%w: the station database cannot record owner authorisations; upgrade it", ErrOwnerAuth)
	}
	if pol.Escrow == nil && !pol.None {
		return fmt.Errorf("%w: the work order installs firmware trust but station.yaml has no owner_auth (escrow_public_key or policy: none)", ErrOwnerAuth)
	}
	binding := OwnerAuthBinding{Serial: r.serial, ChipID: r.chipID, WorkOrder: r.p.cfg.WorkOrder}
	if pol.None {
		if _, err := st.RecordOwnerAuth(ctx, db.OwnerAuthRecord{DeviceSerial: r.serial, RunID: r.runID, ChipID: r.chipID,
			WorkOrder: binding.WorkOrder, Policy: db.OwnerAuthNone}); err != nil {
			return fmt.Errorf("%w: record policy none: %w", ErrOwnerAuth, err)
		}
		return nil
	}
	raw, err := NewOwnerAuth()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrOwnerAuth, err)
	}
	auth := OwnerAuth(raw)
	sealed, err := SealOwnerAuth(pol.Escrow, auth, binding)
	if err != nil {
		return err
	}
	id, err := st.RecordOwnerAuth(ctx, db.OwnerAuthRecord{DeviceSerial: r.serial, RunID: r.runID, ChipID: r.chipID, WorkOrder: binding.WorkOrder,
		Policy: db.OwnerAuthSealed, EscrowKeyID: sealed.EscrowKeyID, Suite: sealed.Suite, Enc: sealed.Enc, Sealed: sealed.Sealed})
	if err != nil {
		return fmt.Errorf("%w: record the sealed value: %w", ErrOwnerAuth, err)
	}
	// From here the record is pending: "maybe set". It becomes abandoned only
	// when the chip provably kept its previous value (the set command was
	// never sent, or the agent refused the request before any TPM command
	// ran); a timeout, a lost line or a device error after sending leaves it
	// pending, and the gate of the next run treats the chip as set (RMA
	// desk).
	abandon := func(cause error, reason string) error {
		if aerr := st.MarkOwnerAuthAbandoned(context.WithoutCancel(ctx), id, reason); aerr != nil {
			return fmt.Errorf("%w: %w (and recording record %d abandoned failed: %w)", ErrOwnerAuth, cause, id, aerr)
		}
		return cause
	}
	if err := r.faultErr(FaultOwnerAuthSealed); err != nil {
		return abandon(err, "the run stopped before the set command was sent: "+err.Error())
	}
	if err := ctx.Err(); err != nil {
		return abandon(fmt.Errorf("%w: set on the chip: %w", ErrOwnerAuth, err), "the run was cancelled before the set command was sent")
	}
	if err := r.client.Call(ctx, proto.MsgSetOwnerAuth, proto.SetOwnerAuthRequest{NewAuth: auth}, &proto.SetOwnerAuthResponse{}); err != nil {
		err = fmt.Errorf("%w: set on the chip: %w", ErrOwnerAuth, err)
		var pe *proto.Error
		if errors.As(err, &pe) && refusedBeforeChip(pe.Code) {
			// The agent refused the request itself (malformed, unsupported):
			// no TPM command ran, the chip kept its previous value. A device
			// error is not proof: a retry of a request whose first answer was
			// lost may fail on a chip the first attempt changed.
			return abandon(err, "the device refused the set command: "+pe.Message)
		}
		return fmt.Errorf("%w (record %d stays pending, maybe set: the chip may hold it)", err, id)
	}
	r.fault(FaultOwnerAuthSet)
	if err := st.MarkOwnerAuthSet(ctx, id); err != nil {
		return fmt.Errorf("%w: record that it is set: %w", ErrOwnerAuth, err)
	}
	return nil
}

// ownerAuthGate runs before anything is issued or written: a chip whose
// owner authorisation this station sealed and set earlier refuses every
// owner-authorised NV write of this run, and the station cannot open the
// sealed value — only the RMA desk can, with the escrow private key. The
// run is refused with that instruction, unless a supervisor's rework says
// the RMA desk reset the chip (recorded in the ledger). The records were
// read while the device made its keys (sealedOwnerAuth, from identify);
// a run that did not read them reads them now.
func (r *run) ownerAuthGate(ctx context.Context) error {
	if r.proof != ca.ProofTPM {
		return nil
	}
	if !r.ownerAuthRead {
		rec, err := r.sealedOwnerAuth(ctx, r.chipID)
		if err != nil {
			return err
		}
		r.ownerAuthHit, r.ownerAuthRead = rec, true
	}
	rec := r.ownerAuthHit
	if rec == nil {
		return nil
	}
	if r.job.Rework != nil && r.job.Rework.ChipReset {
		if err := r.p.cfg.Store.Audit(ctx, "owner_auth.chip-reset", r.job.Rework.Supervisor, map[string]any{"device": r.serial, "run": r.runID, "record": rec.ID}); err != nil {
			return fmt.Errorf("%w: record the chip reset: %w", ErrOwnerAuth, err)
		}
		return nil
	}
	return fmt.Errorf("%w: %w (record %d, %s): take the device to the RMA desk: unseal it there (wsc owner-auth unseal), clear the TPM, then rework it on the line with the chip reset recorded (wsc provision --rework --chip-reset)", ErrOwnerAuth, ErrOwnerAuthSealed, rec.ID, ownerAuthStateText(rec.State))
}

// sealedOwnerAuth returns the newest owner-authorisation record of this
// serial that may be set on chipID (nil when none): a pending record counts
// as set — the run that wrote it may have sent the value before it stopped
// (fail closed); an abandoned one never reached the chip.
func (r *run) sealedOwnerAuth(ctx context.Context, chipID []byte) (*db.OwnerAuthRecord, error) {
	st, ok := r.p.cfg.Store.(ownerAuthStore)
	if !ok {
		return nil, nil
	}
	recs, err := st.OwnerAuths(ctx, r.serial)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOwnerAuth, err)
	}
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].MaybeSet() && bytes.Equal(recs[i].ChipID, chipID) {
			rec := recs[i]
			return &rec, nil
		}
	}
	return nil, nil
}

// allConfirmer confirms several certificates and closes the run in one
// durable commit (db.Store).
type allConfirmer interface {
	ConfirmAllAndFinish(ctx context.Context, certSerialHexes []string, runID int64, steps map[string]time.Duration) error
}

// confirmAndFinish closes a good run: the identity certificate and, when
// the run delivered one, the signing certificate are confirmed with the
// run's result — in one commit when the store can, so that the signing
// certificate costs the run no extra durable commit.
func (r *run) confirmAndFinish(ctx context.Context, idSerial string, steps map[string]time.Duration) error {
	st := r.p.cfg.Store
	sn := r.trust.issued
	if sn == "" {
		return st.ConfirmAndFinish(ctx, idSerial, r.runID, steps)
	}
	var err error
	if ac, ok := st.(allConfirmer); ok {
		err = ac.ConfirmAllAndFinish(ctx, []string{idSerial, sn}, r.runID, steps)
	} else if err = st.MarkConfirmed(ctx, sn); err == nil {
		err = st.ConfirmAndFinish(ctx, idSerial, r.runID, steps)
	}
	if err == nil {
		r.p.pending.remove(sn)
	}
	return err
}

// trustDefinitive: a signing-key, anchors or owner-authorisation failure
// that is the device's answer, not the line's (a timeout or a pulled cable
// is retried; a device that refuses or breaks its evidence is not).
func trustDefinitive(err error) bool {
	if !errors.Is(err, ErrSigningKey) && !errors.Is(err, ErrAnchors) && !errors.Is(err, ErrOwnerAuth) {
		return false
	}
	return !errors.Is(err, proto.ErrTimeout) && !errors.Is(err, proto.ErrClosed) && !errors.Is(err, context.Canceled) &&
		!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrOwnerAuthSealed)
}

// afterFailures is afterFailure for both certificates a run may have
// signed: the identity certificate, then the signing certificate.
func (r *run) afterFailures(ctx context.Context, runErr error) string {
	_ = r.settleSigning() // its error is the run's, or the run failed before
	note := r.afterFailure(ctx, runErr)
	sn := r.trust.issued
	if sn == "" || sn == r.issued {
		return note
	}
	var more string
	if !definitive(runErr) {
		r.p.pending.add(sn)
		more = fmt.Sprintf("signing certificate %s is issued but not confirmed: retry this device to deliver it again", sn)
	} else if revoked, err := r.p.cfg.Store.RevokeUnconfirmed(context.WithoutCancel(ctx), sn, runErr.Error()); err != nil {
		more = fmt.Sprintf("signing certificate %s could not be revoked (%v): call the shift lead", sn, err)
	} else if revoked {
		more = fmt.Sprintf("signing certificate %s revoked (cessationOfOperation)", sn)
	} else {
		more = fmt.Sprintf("signing certificate %s was already confirmed or revoked", sn)
	}
	if note == "" {
		return more
	}
	return note + "; " + more
}

// trustInstruction is the operator's sentence for the issue-15 failures
// ("" for other errors, and for a line fault that a reseat may cure).
func trustInstruction(err error, slot int) string {
	switch {
	case errors.Is(err, ErrOwnerAuthSealed):
		return fmt.Sprintf("The TPM of the device on slot %d holds an owner authorisation this station sealed earlier: take it to the RMA desk (wsc owner-auth unseal, clear the TPM), then rework it with the chip reset. Do not retry on the line.", slot)
	case !trustDefinitive(err):
		return ""
	case errors.Is(err, ErrOwnerAuth):
		return fmt.Sprintf("The owner authorisation of the device on slot %d could not be sealed, recorded or set: its certificates were revoked. Put it aside and call the shift lead (check station.yaml owner_auth).", slot)
	case errors.Is(err, ErrSigningKey), errors.Is(err, ErrAnchors):
		return fmt.Sprintf("The device on slot %d did not take its code-signing key or firmware trust anchors as sent: its certificates were revoked. Put it in the red bin and call the shift lead.", slot)
	}
	return ""
}

// faultErr is fault for the issue-15 points: a test's FaultInject may
// fail the run there.
func (r *run) faultErr(point string) error {
	r.fault(point)
	if f := r.p.cfg.FaultInject; f != nil {
		return f(point)
	}
	return nil
}

// errDigestTaken stops wasmsign once it handed over the digest to sign.
var errDigestTaken = errors.New("digest taken")
