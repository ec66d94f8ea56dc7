// Package ca is the station's offline private certificate authority.
//
// It holds several concerns, each in its own files:
//
//   - the PKI ceremony (init.go, rotate.go): an offline root and a per-station
//     intermediate, both P-256, rotation and root rollover;
//   - key storage (keyfile.go, keys.go, pkcs11.go): password-encrypted
//     PKCS#8 (PBES2) PEM, never legacy PEM encryption, or keys in a PKCS#11
//     token through go.step.sm/crypto's pkcs11 KMS (cgo builds), recorded in
//     the folder as key URIs without the PIN;
//   - issuance (ca.go, issue.go, profile.go): device certificates signed
//     through smallstep's embedded authority (authority.NewEmbedded) with a
//     hot-swappable intermediate signer, names taken from station data only;
//   - the station database as smallstep's AuthDB (store.go, authdb.go):
//     issuance records with quotas and key-to-device binding, revocations
//     and CRL numbers in one place;
//   - revocation, per-issuer CRLs, trust bundles and status (crl.go, bundle.go);
//   - the station side of the TCG "TPM 2.0 Keys for Device Identity and
//     Attestation" OEM flow (attest.go): EK certificate chain, TPM2_Certify of
//     the IDevID by the IAK, and MakeCredential for credential activation.
//
// The package sees attestation evidence as plain bytes (TPM wire structures)
// and never imports devices, station, ui or db; storage is reached through
// interfaces defined here (Store, RevocationStore, Auditor), which the
// station package adapts the database to (station.CAStore).
package ca
