package tpm

import (
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// ActivateCredential answers the station's credential challenge: the
// station ran MakeCredential (tpm2.CreateCredential) with an EK public key
// and the IAK's Name; only this TPM can recover the secret, and only if the
// IAK is loaded in it. The IAK is the activated object, the EK the
// decryption key (with a PolicySecret(TPM_RH_ENDORSEMENT) policy session
// when the EK template requires one, i.e. the low-range L-1/L-2 EKs).
//
// credBlob and encSecret are the raw buffers returned by
// tpm2.CreateCredential (TPMS_ID_OBJECT and the encrypted seed, without
// TPM2B size prefixes). The EK is chosen by the encrypted seed's form: 256
// bytes for RSA-2048, an ECC point of 32 or 48 byte coordinates for
// P-256/P-384; Config.EKKind, if set, must agree.
func (d *Device) ActivateCredential(credBlob, encSecret []byte) ([]byte, error) {
	kind := ekKindOfSecret(encSecret)
	if kind == "" {
		return nil, fmt.Errorf("activate credential: encrypted secret of %d bytes matches no ek kind", len(encSecret))
	}
	if d.cfg.EKKind != "" && d.cfg.EKKind != kind {
		return nil, fmt.Errorf("activate credential: secret is for an %s ek, configured ek is %s", kind, d.cfg.EKKind)
	}
	return d.ActivateCredentialWith(kind, credBlob, encSecret)
}

// ActivateCredentialWith is ActivateCredential with an explicit EK kind
// (EKKindRSA2048, EKKindECCP256 or EKKindECCP384).
func (d *Device) ActivateCredentialWith(kind string, credBlob, encSecret []byte) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.transport(); err != nil {
		return nil, err
	}
	ek, err := d.preferredEK(kind)
	if err != nil {
		return nil, fmt.Errorf("activate credential: %w", err)
	}
	iak, ok, err := d.persistedKey(d.cfg.IAKHandle, true)
	if err != nil {
		return nil, fmt.Errorf("activate credential: iak: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("activate credential: %w", ErrNoKeys)
	}

	var ekHandle tpm2.TPMHandle
	var ekPub tpm2.TPM2BPublic
	if ek.Handle != 0 {
		rp, found, err := d.readPublic(tpm2.TPMHandle(ek.Handle))
		if err != nil {
			return nil, fmt.Errorf("activate credential: %w", err)
		}
		if !found {
			d.eks = nil // evicted since EKs ran; look again next time
			return nil, fmt.Errorf("activate credential: ek %#x no longer persisted: %w", ek.Handle, ErrNoEK)
		}
		ekHandle, ekPub = tpm2.TPMHandle(ek.Handle), rp.OutPublic
	} else {
		var spec ekSpec
		for _, s := range ekSpecs {
			if s.kind == kind {
				spec = s
			}
		}
		h, pub, err := d.createEK(spec)
		if err != nil {
			return nil, fmt.Errorf("activate credential: %w", err)
		}
		defer d.flush(h)
		ekHandle, ekPub = h, pub
	}
	pub, err := ekPub.Contents()
	if err != nil {
		return nil, fmt.Errorf("activate credential: ek public: %w", err)
	}
	name, err := tpm2.ObjectName(pub)
	if err != nil {
		return nil, fmt.Errorf("activate credential: ek name: %w", err)
	}

	rsp, err := tpm2.ActivateCredential{
		ActivateHandle: iak.auth(),
		KeyHandle:      tpm2.AuthHandle{Handle: ekHandle, Name: *name, Auth: d.ekSession(pub)},
		CredentialBlob: tpm2.TPM2BIDObject{Buffer: credBlob},
		Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encSecret},
	}.Execute(d.tpm)
	if err != nil {
		return nil, fmt.Errorf("activate credential with %s ek: %w", kind, err)
	}
	return rsp.CertInfo.Buffer, nil
}

// ekSession authorizes the EK in the USER role. High-range EKs (H-x
// templates, userWithAuth set) take their empty auth value; low-range EKs
// need a policy session satisfying PolicySecret(TPM_RH_ENDORSEMENT).
func (d *Device) ekSession(pub *tpm2.TPMTPublic) tpm2.Session {
	if pub.ObjectAttributes.UserWithAuth {
		return tpm2.PasswordAuth(nil)
	}
	endorsement := d.endorsementAuth()
	return tpm2.Policy(pub.NameAlg, 16, func(t transport.TPM, h tpm2.TPMISHPolicy, nonceTPM tpm2.TPM2BNonce) error {
		_, err := tpm2.PolicySecret{
			AuthHandle:    endorsement,
			PolicySession: h,
			NonceTPM:      nonceTPM,
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("policy secret (endorsement): %w", err)
		}
		return nil
	})
}

// ekKindOfSecret tells the EK kind from an encrypted seed's form.
func ekKindOfSecret(s []byte) string {
	if len(s) == 256 {
		return EKKindRSA2048
	}
	if len(s) < 4 {
		return ""
	}
	x := int(binary.BigEndian.Uint16(s))
	if 2+x+2 > len(s) {
		return ""
	}
	y := int(binary.BigEndian.Uint16(s[2+x:]))
	if len(s) != 4+x+y || x != y {
		return ""
	}
	switch x {
	case 32:
		return EKKindECCP256
	case 48:
		return EKKindECCP384
	}
	return ""
}
