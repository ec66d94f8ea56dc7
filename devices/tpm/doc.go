// Package tpm is the TPM 2.0 backend of a wsc device: it reads the
// endorsement key (EK) and its certificate, creates and persists the
// attestation key (IAK) and the device identity key (IDevID), certifies the
// IDevID with the IAK, answers the station's credential challenge
// (TPM2_ActivateCredential), produces a PKCS#10 CSR signed inside the TPM and
// stores the issued certificate chain in owner-hierarchy NV indices.
//
// It is written on go-tpm's tpm2 package (not legacy/tpm2) and is pure Go:
// the in-process go-tpm-tools simulator (cgo) is only compiled with the
// build tag "tpmsim", the Windows TBS transport only for GOOS=windows.
//
// # Transports
//
// OpenTransport understands "/dev/tpmrm0" (preferred on Linux: the kernel
// resource manager isolates handles), "/dev/tpm0", "swtpm:unix:///path/sock",
// "swtpm:tcp://host:port", "tbs" (Windows) and "sim" (build tag tpmsim).
//
// # Defaults
//
// See DefaultConfig: SRK 0x81000001, IAK 0x81000010, IDevID 0x81000011
// (owner range of persistent handles), certificate chain from NV index
// 0x01500010 upward (owner range 0x01500000-0x015FFFFF), at most 8 indices.
//
// # Latency profiles
//
// A Device does not know how fast its TPM is. LatencyTPM, a transport.TPM
// decorator keyed by command code, makes a fast TPM (swtpm, the simulator)
// wait per command as long as a real chip would (see LatencyProfiles and
// WithLatencyProfile). It is meant for honest throughput estimates of a
// bench of simulated devices (wsc-agent --latency-profile).
package tpm
