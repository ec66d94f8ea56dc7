package proto

import (
	"bytes"
	"io"
	"testing"
)

// FuzzDecodeFrame: any byte string either fails to decode or decodes to a
// frame that re-encodes to a decodable equal frame; the streaming reader
// agrees with DecodeFrame and never buffers more than MaxFrameSize.
// Seed corpus: testdata/fuzz/FuzzDecodeFrame.
func FuzzDecodeFrame(f *testing.F) {
	for _, fr := range []Frame{
		{Version: 1, ID: 1, Type: MsgHello, Payload: []byte{0xa1, 0x01, 0x81, 0x01}},
		{Version: 1, Flags: FlagResponse | FlagMore | 5<<chunkShift, ID: 0xffffffff, Type: MsgReadChain, Payload: bytes.Repeat([]byte{0, 1}, 300)},
		{Version: 1, Flags: FlagResponse, Type: MsgError, Payload: []byte{0xa1, 0x01, 0x01}},
	} {
		enc, _ := EncodeFrame(nil, fr)
		f.Add(enc[:len(enc)-1])
	}
	f.Add([]byte{})
	f.Add([]byte{0x01})
	f.Add([]byte{0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := DecodeFrame(data)
		// Streaming reader over the same bytes, delimited.
		c := NewConn(struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(append(append([]byte{Delimiter}, data...), Delimiter)), io.Discard})
		sf, serr := c.ReadFrame()
		if c.frameBufPeak() > MaxFrameSize {
			t.Fatalf("reader buffered %d bytes", c.frameBufPeak())
		}
		if err != nil {
			if bytes.IndexByte(data, 0) < 0 && serr == nil {
				t.Fatalf("DecodeFrame failed (%v) but the reader accepted %+v", err, sf)
			}
			return
		}
		if serr != nil || sf.ID != fr.ID || !bytes.Equal(sf.Payload, fr.Payload) {
			t.Fatalf("reader disagrees with DecodeFrame: %v", serr)
		}
		enc, err := EncodeFrame(nil, fr)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		fr2, err := DecodeFrame(enc[:len(enc)-1])
		if err != nil {
			t.Fatalf("decode re-encoded: %v", err)
		}
		if fr2.Version != fr.Version || fr2.Flags != fr.Flags || fr2.ID != fr.ID || fr2.Type != fr.Type || !bytes.Equal(fr2.Payload, fr.Payload) {
			t.Fatalf("round trip changed the frame")
		}
	})
}

// FuzzDecodeMessage: the strict CBOR decoding of every request and
// response type never panics, and what it accepts re-encodes stably.
// Seed corpus: testdata/fuzz/FuzzDecodeMessage.
func FuzzDecodeMessage(f *testing.F) {
	x := newExchangeData()
	seeds := []struct {
		t    MsgType
		resp bool
		v    any
	}{
		{MsgHello, false, HelloRequest{Versions: []uint8{1, 2}}},
		{MsgHello, true, HelloResponse{Version: 1, Backend: "tpm", Serial: "TPM-01", Capabilities: []string{"ecc-p256"}}},
		{MsgGetEK, true, GetEKResponse{EKPublic: x.ekPublic[:20], EKCert: x.ekCert[:40], EKKind: "rsa2048"}},
		{MsgCreateKeys, false, CreateKeysRequest{Nonce: x.nonce, Subject: "dev"}},
		{MsgCreateKeys, true, CreateKeysResponse{IAKPublic: x.iak[:10], CSR: x.csr[:10], Created: true}},
		{MsgActivateCredential, false, ActivateCredentialRequest{CredentialBlob: x.credBlob[:8], EncryptedSecret: x.encSecret[:8]}},
		{MsgInstallChain, false, InstallChainRequest{Chain: [][]byte{{1, 2}, {3}}, Lock: true}},
		{MsgInstallChain, true, InstallChainResponse{SHA256: x.chainHash, NVIndices: []uint32{0x01500000}}},
		{MsgReadChain, true, ReadChainResponse{Chain: [][]byte{{0x30}}}},
		{MsgSignDigest, false, SignDigestRequest{Digest: x.digest}},
		{MsgError, true, ErrorResponse{Code: uint16(ErrBusy), Message: "busy"}},
		{MsgLock, false, LockRequest{}},
	}
	for _, s := range seeds {
		p, err := Marshal(s.v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(s.t), s.resp, p)
	}
	f.Add(uint8(0x42), false, []byte{0xa0})
	f.Add(uint8(MsgHello), false, []byte{0xbf, 0xff})
	f.Fuzz(func(t *testing.T, typ uint8, resp bool, data []byte) {
		decode := DecodeRequest
		if resp {
			decode = DecodeResponse
		}
		v, err := decode(MsgType(typ), data)
		if err != nil {
			return
		}
		enc1, err := Marshal(v)
		if err != nil {
			t.Fatalf("re-encode %T: %v", v, err)
		}
		v2, err := decode(MsgType(typ), enc1)
		if err != nil {
			t.Fatalf("decode re-encoded %T: %v", v, err)
		}
		enc2, err := Marshal(v2)
		if err != nil || !bytes.Equal(enc1, enc2) {
			t.Fatalf("%T does not re-encode stably: %x vs %x (%v)", v, enc1, enc2, err)
		}
	})
}
