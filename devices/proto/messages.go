package proto

import (
	"fmt"
	"reflect"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Protocol versions.
const (
	// BaseVersion is the version every implementation speaks. Hello frames
	// and error replies to frames of an unknown version always carry it, so
	// that peers of different generations can still negotiate.
	BaseVersion uint8 = 1
	// CurrentVersion is the newest version this package implements.
	CurrentVersion uint8 = 1
)

// MsgType identifies a request and its response. An error reply carries
// MsgError instead of the request's type.
type MsgType uint8

// Message types. Values are part of the wire format; never renumber.
const (
	MsgHello               MsgType = 0x01 // HelloRequest / HelloResponse
	MsgGetEK               MsgType = 0x02 // GetEKRequest / GetEKResponse
	MsgCreateKeys          MsgType = 0x03 // CreateKeysRequest / CreateKeysResponse
	MsgActivateCredential  MsgType = 0x04 // ActivateCredentialRequest / ActivateCredentialResponse
	MsgInstallChain        MsgType = 0x05 // InstallChainRequest / InstallChainResponse
	MsgReadChain           MsgType = 0x06 // ReadChainRequest / ReadChainResponse
	MsgSignDigest          MsgType = 0x07 // SignDigestRequest / SignDigestResponse
	MsgLock                MsgType = 0x08 // LockRequest / LockResponse
	MsgReset               MsgType = 0x09 // ResetRequest / ResetResponse
	MsgSetOwnerAuth        MsgType = 0x0A // SetOwnerAuthRequest / SetOwnerAuthResponse
	MsgWriteAnchors        MsgType = 0x0B // WriteAnchorsRequest / WriteAnchorsResponse
	MsgReadAnchors         MsgType = 0x0C // ReadAnchorsRequest / ReadAnchorsResponse
	MsgSetupCounter        MsgType = 0x0D // SetupCounterRequest / SetupCounterResponse
	MsgCreateSigningKey    MsgType = 0x0E // CreateSigningKeyRequest / CreateSigningKeyResponse
	MsgInstallSigningChain MsgType = 0x0F // InstallChainRequest / InstallChainResponse (the signing key's chain)
	MsgSignWithSigningKey  MsgType = 0x10 // SignDigestRequest / SignDigestResponse (the signing key; not one bound to measured boot)
	MsgSignWithOwnerPolicy MsgType = 0x11 // SignWithOwnerPolicyRequest / SignDigestResponse (a signing key bound to measured boot, owner branch)
	MsgBusy                MsgType = 0x7E // BusyResponse: the request with this id is still running
	MsgError               MsgType = 0x7F // ErrorResponse, in reply to any request
)

// CapKeepalive is the Hello capability of an agent that sends MsgBusy
// frames while a request runs. A station that sees it detects a pulled cable
// after KeepaliveTimeout of silence instead of waiting out the whole
// operation's timeout, which is sized for the slowest real chip.
const CapKeepalive = "keepalive"

// CapSigningKeyPolicy is the Hello capability of an agent that binds its
// code-signing key to measured boot (CreateSigningKeyRequest.FleetKey) and
// signs with such a key through its PolicySecret(owner) branch
// (MsgSignWithOwnerPolicy). A station whose work order binds signing keys
// refuses an agent without it before the device makes a key.
const CapSigningKeyPolicy = "signing-key-policy"

// Keepalive timing: the agent reports a running request every
// KeepaliveInterval; the station gives up on an attempt after
// KeepaliveTimeout without any frame for it.
const (
	KeepaliveInterval = 500 * time.Millisecond
	KeepaliveTimeout  = 2 * time.Second
)

var msgNames = map[MsgType]string{
	MsgHello:               "Hello",
	MsgGetEK:               "GetEK",
	MsgCreateKeys:          "CreateKeys",
	MsgActivateCredential:  "ActivateCredential",
	MsgInstallChain:        "InstallChain",
	MsgReadChain:           "ReadChain",
	MsgSignDigest:          "SignDigest",
	MsgLock:                "Lock",
	MsgReset:               "Reset",
	MsgSetOwnerAuth:        "SetOwnerAuth",
	MsgWriteAnchors:        "WriteAnchors",
	MsgReadAnchors:         "ReadAnchors",
	MsgSetupCounter:        "SetupCounter",
	MsgCreateSigningKey:    "CreateSigningKey",
	MsgInstallSigningChain: "InstallSigningChain",
	MsgSignWithSigningKey:  "SignWithSigningKey",
	MsgSignWithOwnerPolicy: "SignWithOwnerPolicy",
	MsgBusy:                "Busy",
	MsgError:               "Error",
}

// String returns the message type's name, or its hex value when unknown.
func (t MsgType) String() string {
	if s, ok := msgNames[t]; ok {
		return s
	}
	return fmt.Sprintf("MsgType(0x%02x)", uint8(t))
}

// Known reports whether t is a request type defined by this package.
func (t MsgType) Known() bool {
	_, ok := requestTypes[t]
	return ok
}

// MsgTypes returns the request types defined by this package, in wire order.
func MsgTypes() []MsgType {
	return []MsgType{MsgHello, MsgGetEK, MsgCreateKeys, MsgActivateCredential, MsgInstallChain,
		MsgReadChain, MsgSignDigest, MsgLock, MsgReset, MsgSetOwnerAuth, MsgWriteAnchors, MsgReadAnchors, MsgSetupCounter,
		MsgCreateSigningKey, MsgInstallSigningChain, MsgSignWithSigningKey, MsgSignWithOwnerPolicy}
}

// DefaultTimeout returns how long the station waits for one attempt of a
// request of type t, sized for real chips rather than simulators (see
// FACTS.md): ECC key generation takes 0.1–0.25 s, an ECDSA signature 25–190
// ms, and an RSA-2048 key generation (an EK that is not persisted and must be
// recreated) up to 15 s. Each value also leaves at least a second for moving
// a few kilobytes at 115200 baud (about 87 µs per byte).
func DefaultTimeout(t MsgType) time.Duration {
	switch t {
	case MsgHello:
		return 2 * time.Second // no key operation; an agent that is up answers in milliseconds
	case MsgGetEK:
		return 20 * time.Second // may recreate an RSA-2048 EK primary (up to 15 s) and read ~1.2 KB of NV
	case MsgCreateKeys:
		return 30 * time.Second // EK recreation (15 s) + 2 ECC keygens + Certify + CSR signature + persisting
	case MsgActivateCredential:
		return 20 * time.Second // EK recreation (15 s) + RSA decryption + policy session
	case MsgInstallChain:
		return 15 * time.Second // NV define/write of ~2 KB in 1 KB pieces; SE: 32-byte writes at 45 ms each
	case MsgReadChain:
		return 5 * time.Second
	case MsgSignDigest:
		return 2 * time.Second // ECDSA sign 25–190 ms on real chips
	case MsgLock:
		return 5 * time.Second
	case MsgReset:
		return 10 * time.Second // may evict persistent keys and undefine NV indices
	case MsgSetOwnerAuth:
		return 5 * time.Second
	case MsgWriteAnchors:
		return 10 * time.Second // NV define + write of <1 KB + lock + read back; SE: 32-byte writes at 45 ms each
	case MsgReadAnchors, MsgSetupCounter:
		return 5 * time.Second
	case MsgCreateSigningKey:
		return 10 * time.Second // one ECC keygen + Certify + CSR signature + persisting
	case MsgInstallSigningChain:
		return 15 * time.Second // as InstallChain
	case MsgSignWithSigningKey:
		return 2 * time.Second // as SignDigest
	case MsgSignWithOwnerPolicy:
		return 3 * time.Second // policy session + PolicySecret + PolicyOR + ECDSA sign (25–190 ms) + flush
	default:
		return 5 * time.Second
	}
}

// HelloRequest opens a session and offers the protocol versions the station
// speaks.
type HelloRequest struct {
	Versions []uint8 `cbor:"1,keyasint,omitempty"`
}

// HelloResponse names the device and the version the agent chose: the highest
// version offered by the station that the agent also speaks.
type HelloResponse struct {
	Version      uint8    `cbor:"1,keyasint,omitempty"`
	Backend      string   `cbor:"2,keyasint,omitempty"` // "tpm", "se" or "pkcs11"
	Serial       string   `cbor:"3,keyasint,omitempty"`
	Model        string   `cbor:"4,keyasint,omitempty"`
	Firmware     string   `cbor:"5,keyasint,omitempty"`
	Capabilities []string `cbor:"6,keyasint,omitempty"`
}

// GetEKRequest asks for the endorsement key and its certificate.
type GetEKRequest struct{}

// GetEKResponse carries the endorsement key.
type GetEKResponse struct {
	EKPublic []byte `cbor:"1,keyasint,omitempty"` // TPM2B_PUBLIC, marshalled
	EKCert   []byte `cbor:"2,keyasint,omitempty"` // DER, trimmed of NV padding
	EKKind   string `cbor:"3,keyasint,omitempty"` // "rsa2048", "ecc-p384", ...
}

// CreateKeysRequest asks the device to create (or reuse) its attestation and
// identity keys, certify the identity key with the attestation key over
// Nonce, and return a CSR signed by the identity key.
type CreateKeysRequest struct {
	Nonce   []byte `cbor:"1,keyasint,omitempty"`
	Subject string `cbor:"2,keyasint,omitempty"` // CN hint, informational only: the CA never copies names from a CSR
	// SigningKeyAhead (only to a device whose Hello lists
	// "signing-key-ahead") asks it to make its code-signing key in the
	// background once it has answered: created and certified by the IAK
	// over this Nonce, with the measured-boot binding FleetKey/PolicyRef
	// (as in CreateSigningKeyRequest). CreateSigningKey with the same
	// Nonce and binding collects it; the chip works while the line
	// carries other frames.
	SigningKeyAhead bool   `cbor:"3,keyasint,omitempty"`
	FleetKey        []byte `cbor:"4,keyasint,omitempty"`
	PolicyRef       []byte `cbor:"5,keyasint,omitempty"`
	// CounterAhead (only to a device whose Hello lists "counter-ahead")
	// asks it to set up its anti-rollback counter in the background too;
	// SetupCounter collects the value.
	CounterAhead bool `cbor:"6,keyasint,omitempty"`
}

// CreateKeysResponse carries the attestation evidence and the CSR.
type CreateKeysResponse struct {
	IAKPublic        []byte `cbor:"1,keyasint,omitempty"` // TPM2B_PUBLIC
	IDevIDPublic     []byte `cbor:"2,keyasint,omitempty"` // TPM2B_PUBLIC
	CertifyInfo      []byte `cbor:"3,keyasint,omitempty"` // TPM2B_ATTEST
	CertifySignature []byte `cbor:"4,keyasint,omitempty"` // TPMT_SIGNATURE
	CSR              []byte `cbor:"5,keyasint,omitempty"` // DER
	Created          bool   `cbor:"6,keyasint,omitempty"` // false when existing keys were reused
	// SEAttestation is a secure element's key attestation (ATECC608 GenKey
	// digest + Sign internal by the factory attestation key); nil from
	// TPMs and from chips without an attestation key.
	SEAttestation *SEAttestation `cbor:"7,keyasint,omitempty"`
}

// SEAttestation is the evidence an ATECC608-class secure element gives for
// its device key, as plain chip data. The agent ran, in one wake session:
// Nonce (random mode, NumIn = first 20 bytes of SHA-256(CreateKeys nonce))
// → GenKey (GenKeyMode, KeySlot) → Sign (SignMode, AttestationSlot). The
// signature is over SHA-256 of the 55-byte Sign internal message, which the
// station rebuilds from these fields, the nonce it sent and the config zone
// (docs/protocol.md "SE key attestation"). TempKey flags are not sent: the
// verifier fixes them to what that sequence yields (KeyID = KeySlot,
// GenKeyData 1, others 0).
type SEAttestation struct {
	// Serial is the chip's 9-byte serial number (config bytes 0-3, 8-12).
	Serial []byte `cbor:"1,keyasint,omitempty"`
	// Config is the whole 128-byte configuration zone as read from the chip.
	Config []byte `cbor:"2,keyasint,omitempty"`
	// KeySlot is the attested key's slot (0, the device key).
	KeySlot uint8 `cbor:"3,keyasint,omitempty"`
	// AttestationSlot is the factory attestation key's slot (2).
	AttestationSlot uint8 `cbor:"4,keyasint,omitempty"`
	// GenKeyMode is the GenKey mode: 0x0C when the key was created by this
	// GenKey, 0x08 when an existing key's public key was recomputed.
	GenKeyMode uint8 `cbor:"5,keyasint,omitempty"`
	// SignMode is the Sign mode: 0x40 (internal message, serial included).
	SignMode uint8 `cbor:"6,keyasint,omitempty"`
	// RandOut is the 32-byte output of the Nonce command.
	RandOut []byte `cbor:"7,keyasint,omitempty"`
	// PublicKey is the attested key as the chip returned it: X || Y, 64 bytes.
	PublicKey []byte `cbor:"8,keyasint,omitempty"`
	// Signature is r || s, 64 bytes, by the attestation key.
	Signature []byte `cbor:"9,keyasint,omitempty"`
	// Chain is the manufacturer chain of the attestation key, DER: the
	// device certificate first, then the signer; empty when the chip holds
	// none.
	Chain [][]byte `cbor:"10,keyasint,omitempty"`
}

// ActivateCredentialRequest carries a credential made by the station for
// the attestation key's name under the endorsement key.
type ActivateCredentialRequest struct {
	CredentialBlob  []byte `cbor:"1,keyasint,omitempty"`
	EncryptedSecret []byte `cbor:"2,keyasint,omitempty"`
}

// ActivateCredentialResponse returns the recovered secret.
type ActivateCredentialResponse struct {
	Secret []byte `cbor:"1,keyasint,omitempty"`
}

// InstallChainRequest writes a certificate chain into the device.
type InstallChainRequest struct {
	Chain [][]byte `cbor:"1,keyasint,omitempty"` // DER, leaf first
	Lock  bool     `cbor:"2,keyasint,omitempty"` // write-lock the storage after writing
}

// InstallChainResponse reports what was written.
type InstallChainResponse struct {
	SHA256    []byte   `cbor:"1,keyasint,omitempty"` // over the stored chain blob
	NVIndices []uint32 `cbor:"2,keyasint,omitempty"`
}

// ReadChainRequest asks for the stored chain.
type ReadChainRequest struct{}

// ReadChainResponse returns the stored chain.
type ReadChainResponse struct {
	Chain  [][]byte `cbor:"1,keyasint,omitempty"`
	SHA256 []byte   `cbor:"2,keyasint,omitempty"`
}

// SignDigestRequest asks the identity key to sign a digest.
type SignDigestRequest struct {
	Digest []byte `cbor:"1,keyasint,omitempty"`
}

// SignDigestResponse carries an ASN.1 ECDSA signature.
type SignDigestResponse struct {
	Signature []byte `cbor:"1,keyasint,omitempty"`
}

// LockRequest asks the device to lock its provisioning state.
type LockRequest struct{}

// LockResponse acknowledges LockRequest.
type LockResponse struct{}

// ResetRequest asks the device to discard its provisioning state (bench
// and rework use).
type ResetRequest struct{}

// ResetResponse acknowledges ResetRequest.
type ResetResponse struct{}

// SetOwnerAuthRequest sets the TPM owner hierarchy's authorization value
// (TPM only). The station chooses the value (random) and records it
// before sending it; the agent never logs it or stores it on disk.
type SetOwnerAuthRequest struct {
	NewAuth []byte `cbor:"1,keyasint,omitempty"`
}

// SetOwnerAuthResponse acknowledges SetOwnerAuthRequest.
type SetOwnerAuthResponse struct{}

// WriteAnchorsRequest stores the device's firmware trust anchors (the
// devices/anchors encoding) in the chip and, with Lock, write-locks them.
type WriteAnchorsRequest struct {
	Anchors []byte `cbor:"1,keyasint,omitempty"`
	Lock    bool   `cbor:"2,keyasint,omitempty"`
}

// WriteAnchorsResponse carries the anchors read back from the chip after
// the write (and lock), for the station to compare.
type WriteAnchorsResponse struct {
	Anchors []byte `cbor:"1,keyasint,omitempty"`
	Locked  bool   `cbor:"2,keyasint,omitempty"`
}

// ReadAnchorsRequest asks for the stored trust anchors.
type ReadAnchorsRequest struct{}

// ReadAnchorsResponse carries the stored trust anchors.
type ReadAnchorsResponse struct {
	Anchors []byte `cbor:"1,keyasint,omitempty"`
	Locked  bool   `cbor:"2,keyasint,omitempty"`
}

// SetupCounterRequest creates the anti-rollback counter if absent.
type SetupCounterRequest struct{}

// SetupCounterResponse carries the counter's current value (the base the
// station records in the anchors).
type SetupCounterResponse struct {
	Value uint64 `cbor:"1,keyasint,omitempty"`
}

// CreateSigningKeyRequest asks the device to create (or reuse) its
// code-signing key (LDevID), certify it with the attestation key over
// Nonce, and return a CSR signed by it.
type CreateSigningKeyRequest struct {
	Nonce []byte `cbor:"1,keyasint,omitempty"`
	// FleetKey (PKIX DER, ECDSA P-256) and PolicyRef (the product line,
	// at most 32 bytes), when set, bind the key to measured boot: its
	// authPolicy is PolicyOR{PolicyAuthorize(FleetKey, PolicyRef),
	// PolicySecret(owner)} (tpm.SigningKeyAuthPolicy) and password use is
	// off; the CSR is signed through the owner branch.
	FleetKey  []byte `cbor:"2,keyasint,omitempty"`
	PolicyRef []byte `cbor:"3,keyasint,omitempty"`
}

// SignWithOwnerPolicyRequest asks a code-signing key bound to measured
// boot to sign Digest (SHA-256) through its PolicySecret(owner) branch: the
// agent opens a policy session, satisfies PolicySecret with the owner
// authorisation it holds for the chip in this session (the value it was
// started with — empty on a factory-fresh TPM — or the one SetOwnerAuth
// last set), then PolicyOR over the two branches of FleetKey and
// PolicyRef, and signs. The owner authorisation never travels in this
// message. FleetKey (PKIX DER, ECDSA P-256) and PolicyRef (at most 32
// bytes) must be the key's binding, or the TPM refuses (policy check).
type SignWithOwnerPolicyRequest struct {
	Digest    []byte `cbor:"1,keyasint,omitempty"`
	FleetKey  []byte `cbor:"2,keyasint,omitempty"`
	PolicyRef []byte `cbor:"3,keyasint,omitempty"`
}

// CreateSigningKeyResponse carries the signing key's evidence.
type CreateSigningKeyResponse struct {
	IAKPublic        []byte `cbor:"1,keyasint,omitempty"` // TPM2B_PUBLIC
	LDevIDPublic     []byte `cbor:"2,keyasint,omitempty"` // TPM2B_PUBLIC
	CertifyInfo      []byte `cbor:"3,keyasint,omitempty"` // TPM2B_ATTEST
	CertifySignature []byte `cbor:"4,keyasint,omitempty"` // TPMT_SIGNATURE
	CSR              []byte `cbor:"5,keyasint,omitempty"` // DER
	Created          bool   `cbor:"6,keyasint,omitempty"`
}

// ErrorResponse is the payload of an MsgError reply.
// BusyResponse is sent by the agent, with the id of the request it is
// working on, every KeepaliveInterval until the real response is ready. It is
// never cached and never ends a call.
type BusyResponse struct {
	// ElapsedMS is how long the request has been running.
	ElapsedMS uint32 `cbor:"1,keyasint,omitempty"`
}

type ErrorResponse struct {
	Code    uint16 `cbor:"1,keyasint,omitempty"`
	Message string `cbor:"2,keyasint,omitempty"`
}

var requestTypes = map[MsgType]reflect.Type{
	MsgHello:               reflect.TypeFor[HelloRequest](),
	MsgGetEK:               reflect.TypeFor[GetEKRequest](),
	MsgCreateKeys:          reflect.TypeFor[CreateKeysRequest](),
	MsgActivateCredential:  reflect.TypeFor[ActivateCredentialRequest](),
	MsgInstallChain:        reflect.TypeFor[InstallChainRequest](),
	MsgReadChain:           reflect.TypeFor[ReadChainRequest](),
	MsgSignDigest:          reflect.TypeFor[SignDigestRequest](),
	MsgLock:                reflect.TypeFor[LockRequest](),
	MsgReset:               reflect.TypeFor[ResetRequest](),
	MsgSetOwnerAuth:        reflect.TypeFor[SetOwnerAuthRequest](),
	MsgWriteAnchors:        reflect.TypeFor[WriteAnchorsRequest](),
	MsgReadAnchors:         reflect.TypeFor[ReadAnchorsRequest](),
	MsgSetupCounter:        reflect.TypeFor[SetupCounterRequest](),
	MsgCreateSigningKey:    reflect.TypeFor[CreateSigningKeyRequest](),
	MsgInstallSigningChain: reflect.TypeFor[InstallChainRequest](),
	MsgSignWithSigningKey:  reflect.TypeFor[SignDigestRequest](),
	MsgSignWithOwnerPolicy: reflect.TypeFor[SignWithOwnerPolicyRequest](),
}

var responseTypes = map[MsgType]reflect.Type{
	MsgHello:               reflect.TypeFor[HelloResponse](),
	MsgGetEK:               reflect.TypeFor[GetEKResponse](),
	MsgCreateKeys:          reflect.TypeFor[CreateKeysResponse](),
	MsgActivateCredential:  reflect.TypeFor[ActivateCredentialResponse](),
	MsgInstallChain:        reflect.TypeFor[InstallChainResponse](),
	MsgReadChain:           reflect.TypeFor[ReadChainResponse](),
	MsgSignDigest:          reflect.TypeFor[SignDigestResponse](),
	MsgLock:                reflect.TypeFor[LockResponse](),
	MsgReset:               reflect.TypeFor[ResetResponse](),
	MsgSetOwnerAuth:        reflect.TypeFor[SetOwnerAuthResponse](),
	MsgWriteAnchors:        reflect.TypeFor[WriteAnchorsResponse](),
	MsgReadAnchors:         reflect.TypeFor[ReadAnchorsResponse](),
	MsgSetupCounter:        reflect.TypeFor[SetupCounterResponse](),
	MsgCreateSigningKey:    reflect.TypeFor[CreateSigningKeyResponse](),
	MsgInstallSigningChain: reflect.TypeFor[InstallChainResponse](),
	MsgSignWithSigningKey:  reflect.TypeFor[SignDigestResponse](),
	MsgSignWithOwnerPolicy: reflect.TypeFor[SignDigestResponse](),
	MsgBusy:                reflect.TypeFor[BusyResponse](),
	MsgError:               reflect.TypeFor[ErrorResponse](),
}

// DecodeRequest strictly decodes the payload of a request of type t into a
// pointer to its struct (for example *CreateKeysRequest).
func DecodeRequest(t MsgType, payload []byte) (any, error) {
	return decodeTyped(requestTypes, t, payload)
}

// DecodeResponse strictly decodes the payload of a response of type t
// (including MsgError) into a pointer to its struct.
func DecodeResponse(t MsgType, payload []byte) (any, error) {
	return decodeTyped(responseTypes, t, payload)
}

func decodeTyped(m map[MsgType]reflect.Type, t MsgType, payload []byte) (any, error) {
	rt, ok := m[t]
	if !ok {
		return nil, fmt.Errorf("decode %s: %w", t, ErrUnknownType)
	}
	v := reflect.New(rt).Interface()
	if err := Unmarshal(payload, v); err != nil {
		return nil, fmt.Errorf("decode %s: %w", t, err)
	}
	return v, nil
}

// CBOR profiles. Encoding is Core Deterministic (RFC 8949 §4.2), so equal
// messages have equal bytes (and equal replay-cache digests). Decoding is
// strict: no duplicate or unknown keys, no indefinite lengths, no tags,
// bounded nesting and collection sizes; the byte budget is bounded by
// MaxMessageSize before decoding starts.
var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic("proto: cbor encode options: " + err.Error())
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		MaxNestedLevels:   8,
		MaxArrayElements:  4096,
		MaxMapPairs:       64,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		UTF8:              cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic("proto: cbor decode options: " + err.Error())
	}
}

// Marshal encodes v as deterministic CBOR, the payload format of every
// message.
func Marshal(v any) ([]byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("proto: encode payload: %w", err)
	}
	return b, nil
}

// Unmarshal strictly decodes a CBOR payload into v: unknown or duplicate
// keys, trailing bytes, indefinite lengths, tags and payloads larger than
// MaxMessageSize are errors.
func Unmarshal(payload []byte, v any) error {
	if len(payload) > MaxMessageSize {
		return fmt.Errorf("proto: decode payload of %d bytes: exceeds %d", len(payload), MaxMessageSize)
	}
	if err := decMode.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("proto: decode payload: %w", err)
	}
	return nil
}
