package station

import (
	"context"
	"errors"

	"github.com/wsc-project/wsc/ca"
	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/devices/proto"
	"github.com/wsc-project/wsc/devices/se"
)

// A reason code is the stable, machine-readable name of why a device failed,
// printed as reason_code beside the human reason in every JSON a script
// reads (provision results, exports, reports). docs/reason-codes.md lists
// them; a code, once published, keeps its meaning. Scripts branch on the
// code, never on the sentence.
const (
	ReasonSerialInvalid      = "serial-invalid"       // ErrSerialInvalid: the device reports a serial the station refuses
	ReasonNoProof            = "no-proof"             // ErrNoProof: no proof the work order accepts
	ReasonRedBin             = "red-bin"              // ErrRedBin: the chip is held in the red bin
	ReasonChipMismatch       = "chip-mismatch"        // ErrChipMismatch, db.ErrDeviceMismatch: serial and chip do not belong together
	ReasonKeyPolicy          = "key-policy"           // ErrKeyPolicy: a key type or curve the station does not certify
	ReasonEKUntrusted        = "ek-untrusted"         // ca.ErrEKUntrusted, ca.ErrEKMismatch: the TPM's EK certificate is not trusted or not its own
	ReasonCertifyInvalid     = "certify-invalid"      // ca.ErrCertify*: the TPM2_Certify attestation does not hold
	ReasonActivation         = "activation-failed"    // ca.ErrActivation: credential activation failed
	ReasonKeyAttributes      = "key-attributes"       // ca.ErrKeyAttributes: the key may leave the chip or is not sign-only
	ReasonCSRKeyMismatch     = "csr-key-mismatch"     // ca.ErrCSRKeyMismatch: the CSR is not signed by the attested key
	ReasonSEChainUntrusted   = "se-chain-untrusted"   // ca.ErrSEChainUntrusted, ca.ErrSENoChain: secure element's maker chain missing or untrusted
	ReasonAttestation        = "attestation-failed"   // ErrAttestation, ca.ErrAttestation (any other): the device could not prove its key is in its chip
	ReasonLabelMismatch      = "label-mismatch"       // ErrLabelMismatch: the scanned label is another device's
	ReasonKeyRevoked         = "key-revoked"          // db.ErrKeyRevoked, ca.ErrKeyRevoked: the device's key was revoked
	ReasonKeyConflict        = "key-conflict"         // db.ErrKeyConflict, ca.ErrKeyConflict: the key is certified for another device
	ReasonQuotaExceeded      = "quota-exceeded"       // db.ErrQuotaExceeded, ca.ErrQuotaExceeded: the work order's quantity is reached
	ReasonNameNotPermitted   = "name-not-permitted"   // ca.ErrNameNotPermitted: a name outside the intermediate's constraints
	ReasonProfileNotStorable = "profile-not-storable" // se.ErrNotCompressible: the certificate cannot be stored in the secure element
	ReasonReadBack           = "read-back-mismatch"   // ErrReadBack: the chain read back differs (certificate revoked)
	ReasonEndOfLine          = "end-of-line-failed"   // ErrEndOfLine: the end-of-line signature check failed (certificate revoked)
	ReasonDelivery           = "delivery-failed"      // ErrDelivery: the device did not keep its certificate (certificate revoked)
	ReasonDeviceError        = "device-error"         // *proto.Error: the agent answered with an error code
	ReasonDeviceTimeout      = "device-timeout"       // proto.ErrTimeout: no answer from the device
	ReasonProtocol           = "protocol-error"       // proto.ErrProtocol, malformed frames: the device broke the protocol
	ReasonConnectionLost     = "connection-lost"      // proto.ErrClosed: the line to the device failed
	ReasonDiskFull           = "disk-full"            // db.ErrDiskFull: the station's disk is full
	ReasonStorage            = "storage-error"        // db.ErrBusy, db.ErrCorrupt, db.ErrReadOnly: the station database failed
	ReasonCancelled          = "cancelled"            // context.Canceled, DeadlineExceeded: the run was stopped
	ReasonOwnerAuthSealed    = "owner-auth-sealed"    // ErrOwnerAuthSealed: the TPM holds an owner authorisation sealed earlier (RMA desk)
	ReasonOwnerAuth          = "owner-auth-failed"    // ErrOwnerAuth: the owner authorisation could not be sealed, recorded or set (certificates revoked)
	ReasonSigningKey         = "signing-key-failed"   // ErrSigningKey: the code-signing key was not proven, certified or installed (certificates revoked)
	ReasonAnchors            = "trust-anchors-failed" // ErrAnchors: the firmware trust anchors were not written, read back equal or locked (certificates revoked)
	ReasonInternal           = "internal"             // anything else: a bug or an unclassified failure (the reason says what)
)

// reasonTable is ReasonCode's table, most specific first: a wrapped error
// chain carries several sentinels (ErrSEChainUntrusted wraps
// ErrAttestation), and the first match wins.
var reasonTable = []struct {
	code string
	errs []error
}{
	{ReasonSerialInvalid, []error{ErrSerialInvalid}},
	{ReasonNoProof, []error{ErrNoProof}},
	{ReasonRedBin, []error{ErrRedBin}},
	{ReasonChipMismatch, []error{ErrChipMismatch, db.ErrDeviceMismatch}},
	{ReasonKeyPolicy, []error{ErrKeyPolicy}},
	{ReasonEKUntrusted, []error{ca.ErrEKUntrusted, ca.ErrEKMismatch}},
	{ReasonCertifyInvalid, []error{ca.ErrCertifyMagic, ca.ErrCertifyType, ca.ErrCertifyNonce, ca.ErrCertifyName, ca.ErrCertifySignature}},
	{ReasonActivation, []error{ca.ErrActivation}},
	{ReasonKeyAttributes, []error{ca.ErrKeyAttributes}},
	{ReasonCSRKeyMismatch, []error{ca.ErrCSRKeyMismatch}},
	{ReasonSEChainUntrusted, []error{ca.ErrSEChainUntrusted, ca.ErrSENoChain}},
	{ReasonAttestation, []error{ErrAttestation, ca.ErrAttestation, ca.ErrEvidenceMalformed}},
	{ReasonLabelMismatch, []error{ErrLabelMismatch}},
	{ReasonKeyRevoked, []error{db.ErrKeyRevoked, ca.ErrKeyRevoked}},
	{ReasonKeyConflict, []error{db.ErrKeyConflict, ca.ErrKeyConflict}},
	{ReasonQuotaExceeded, []error{db.ErrQuotaExceeded, ca.ErrQuotaExceeded}},
	{ReasonNameNotPermitted, []error{ca.ErrNameNotPermitted}},
	{ReasonProfileNotStorable, []error{se.ErrNotCompressible}},
	{ReasonReadBack, []error{ErrReadBack}},
	{ReasonEndOfLine, []error{ErrEndOfLine}},
	{ReasonDelivery, []error{ErrDelivery}},
	{ReasonDeviceTimeout, []error{proto.ErrTimeout}},
	{ReasonProtocol, []error{proto.ErrProtocol, proto.ErrMalformedFrame, proto.ErrCRC, proto.ErrFrameTooLarge, proto.ErrUnknownType}},
	{ReasonConnectionLost, []error{proto.ErrClosed}},
	{ReasonDiskFull, []error{db.ErrDiskFull}},
	{ReasonStorage, []error{db.ErrBusy, db.ErrCorrupt, db.ErrReadOnly, db.ErrSchemaTooNew}},
	{ReasonCancelled, []error{context.Canceled, context.DeadlineExceeded}},
	{ReasonOwnerAuthSealed, []error{ErrOwnerAuthSealed}},
	{ReasonOwnerAuth, []error{ErrOwnerAuth}},
	{ReasonSigningKey, []error{ErrSigningKey}},
	{ReasonAnchors, []error{ErrAnchors}},
}

// ReasonCodes lists every code ReasonCode returns, in documentation order
// (docs/reason-codes.md).
func ReasonCodes() []string {
	codes := make([]string, 0, len(reasonTable)+2)
	for _, r := range reasonTable {
		codes = append(codes, r.code)
	}
	return append(codes, ReasonDeviceError, ReasonInternal)
}

// ReasonCode is the stable reason code of a failed run's error ("" for
// nil): the one place where the station's sentinel errors, the CA's and
// database's, and the wire protocol's become the reason_code of JSON
// outputs. An error the table does not know is ReasonInternal; an agent's
// coded reply that no sentinel explains is ReasonDeviceError.
func ReasonCode(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasonTable {
		for _, e := range r.errs {
			if errors.Is(err, e) {
				return r.code
			}
		}
	}
	var pe *proto.Error
	if errors.As(err, &pe) {
		return ReasonDeviceError
	}
	return ReasonInternal
}
