// Package ca is the station's offline private certificate authority.
//
// It holds three concerns, each in its own file:
//
//   - the PKI ceremony (init.go, rotate.go): an offline root and a per-station
//     intermediate, both P-256, private keys stored as password-encrypted
//     PKCS#8 (PBES2) PEM, never as legacy PEM encryption;
//   - issuance (ca.go, issue.go, profile.go): device certificates signed
//     through smallstep's embedded authority (authority.NewEmbedded) with a
//     hot-swappable intermediate signer, names taken from station data only;
//   - the station side of the TCG "TPM 2.0 Keys for Device Identity and
//     Attestation" OEM flow (attest.go): EK certificate chain, TPM2_Certify of
//     the IDevID by the IAK, and MakeCredential for credential activation;
//   - revocation, per-issuer CRLs and trust bundles (crl.go, bundle.go).
//
// The package sees attestation evidence as plain bytes (TPM wire structures)
// and never imports devices, station, ui or db; storage is reached through
// interfaces defined here (RevocationStore).
package ca
