package proto

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// pair starts a Server with h on the slave of a fresh pty and returns a
// Client on its master.
func pair(t *testing.T, h Handler, copts []ClientOption, sopts ...ServerOption) (*Client, *Server) {
	t.Helper()
	m, s := openPty(t)
	srv := startServer(t, s, h, sopts...)
	return newClientOn(t, m, copts...), srv
}

func TestRoundTripEveryMessageType(t *testing.T) {
	dev := newFakeDevice()
	c, srv := pair(t, dev, nil)
	ctx := context.Background()
	x := dev.data

	hello, err := c.Hello(ctx)
	if err != nil {
		t.Fatalf("Hello: %v", err)
	}
	want := &HelloResponse{Version: CurrentVersion, Backend: "tpm", Serial: "TPM-0011223344556677", Model: "SLB9672",
		Firmware: "16.13", Capabilities: []string{"ecc-p256", "rsa2048", CapKeepalive}}
	if !reflect.DeepEqual(hello, want) {
		t.Errorf("Hello = %+v, want %+v", hello, want)
	}
	if c.Version() != CurrentVersion {
		t.Errorf("Version() = %d, want %d", c.Version(), CurrentVersion)
	}

	ek, err := c.GetEK(ctx)
	if err != nil {
		t.Fatalf("GetEK: %v", err)
	}
	if !bytes.Equal(ek.EKCert, x.ekCert) || !bytes.Equal(ek.EKPublic, x.ekPublic) || ek.EKKind != "ecc-p384" {
		t.Errorf("GetEK = %d-byte cert, %d-byte public, kind %q", len(ek.EKCert), len(ek.EKPublic), ek.EKKind)
	}

	keys, err := c.CreateKeys(ctx, CreateKeysRequest{Nonce: x.nonce, Subject: "dev-1"})
	if err != nil {
		t.Fatalf("CreateKeys: %v", err)
	}
	wantKeys := &CreateKeysResponse{IAKPublic: x.iak, IDevIDPublic: x.idevid, CertifyInfo: x.attest,
		CertifySignature: x.certSig, CSR: x.csr, Created: true}
	if !reflect.DeepEqual(keys, wantKeys) {
		t.Errorf("CreateKeys response differs")
	}

	act, err := c.ActivateCredential(ctx, ActivateCredentialRequest{CredentialBlob: x.credBlob, EncryptedSecret: x.encSecret})
	if err != nil {
		t.Fatalf("ActivateCredential: %v", err)
	}
	if !bytes.Equal(act.Secret, x.secret) {
		t.Errorf("ActivateCredential secret differs")
	}

	inst, err := c.InstallChain(ctx, InstallChainRequest{Chain: x.chain, Lock: true})
	if err != nil {
		t.Fatalf("InstallChain: %v", err)
	}
	if !bytes.Equal(inst.SHA256, x.chainHash) || !reflect.DeepEqual(inst.NVIndices, []uint32{0x01500010, 0x01500011}) {
		t.Errorf("InstallChain = %+v", inst)
	}

	rc, err := c.ReadChain(ctx)
	if err != nil {
		t.Fatalf("ReadChain: %v", err)
	}
	if !reflect.DeepEqual(rc.Chain, x.chain) {
		t.Errorf("ReadChain chain differs")
	}

	sig, err := c.SignDigest(ctx, SignDigestRequest{Digest: x.digest})
	if err != nil {
		t.Fatalf("SignDigest: %v", err)
	}
	if !bytes.Equal(sig.Signature, x.sig) {
		t.Errorf("SignDigest signature differs")
	}

	if err := c.Lock(ctx); err != nil {
		t.Fatalf("Lock: %v", err)
	}

	// Reset: the fake device refuses with a typed error.
	err = c.Reset(ctx)
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != ErrLocked || !errors.Is(err, ErrLocked) || errors.Is(err, ErrBusy) {
		t.Fatalf("Reset error = %v, want *Error with ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "reset refused") {
		t.Errorf("Reset error %q lacks the agent's sentence", err)
	}

	// Handler-level validation error.
	_, err = c.SignDigest(ctx, SignDigestRequest{Digest: []byte{1, 2, 3}})
	if !errors.Is(err, ErrBadRequest) {
		t.Errorf("SignDigest(3 bytes) error = %v, want ErrBadRequest", err)
	}

	// Trust anchors and counter (issue 15): typed round trips.
	if err := c.Call(ctx, MsgSetOwnerAuth, SetOwnerAuthRequest{NewAuth: x.secret}, &SetOwnerAuthResponse{}); err != nil {
		t.Fatalf("SetOwnerAuth: %v", err)
	}
	var wa WriteAnchorsResponse
	if err := c.Call(ctx, MsgWriteAnchors, WriteAnchorsRequest{Anchors: x.digest, Lock: true}, &wa); err != nil || !bytes.Equal(wa.Anchors, x.digest) || !wa.Locked {
		t.Fatalf("WriteAnchors = %+v, %v", wa, err)
	}
	var ra ReadAnchorsResponse
	if err := c.Call(ctx, MsgReadAnchors, ReadAnchorsRequest{}, &ra); err != nil || !bytes.Equal(ra.Anchors, x.chainHash) || !ra.Locked {
		t.Fatalf("ReadAnchors = %+v, %v", ra, err)
	}
	var sc SetupCounterResponse
	if err := c.Call(ctx, MsgSetupCounter, SetupCounterRequest{}, &sc); err != nil || sc.Value != 41 {
		t.Fatalf("SetupCounter = %+v, %v", sc, err)
	}

	var sk CreateSigningKeyResponse
	if err := c.Call(ctx, MsgCreateSigningKey, CreateSigningKeyRequest{Nonce: x.nonce}, &sk); err != nil || !bytes.Equal(sk.CSR, x.csr) {
		t.Fatalf("CreateSigningKey: %v", err)
	}
	var isc InstallChainResponse
	if err := c.Call(ctx, MsgInstallSigningChain, InstallChainRequest{Chain: x.chain}, &isc); err != nil || !reflect.DeepEqual(isc.NVIndices, []uint32{0x01500020}) {
		t.Fatalf("InstallSigningChain = %+v, %v", isc, err)
	}

	var sks SignDigestResponse
	if err := c.Call(ctx, MsgSignWithSigningKey, SignDigestRequest{Digest: x.digest}, &sks); err != nil || !bytes.Equal(sks.Signature, x.sig) {
		t.Fatalf("SignWithSigningKey: %v", err)
	}
	var sop SignDigestResponse
	if err := c.Call(ctx, MsgSignWithOwnerPolicy, SignWithOwnerPolicyRequest{Digest: x.digest, FleetKey: x.iak, PolicyRef: []byte("line")}, &sop); err != nil || !bytes.Equal(sop.Signature, x.sig) {
		t.Fatalf("SignWithOwnerPolicy: %v", err)
	}

	for _, mt := range MsgTypes() {
		if dev.count(mt) < 1 {
			t.Errorf("handler never saw %s", mt)
		}
	}
	// The server counts a response once its Write returned, which can be
	// after the client read it.
	waitFor(t, 2*time.Second, func() bool { return srv.Stats().BytesOut == c.Stats().BytesIn })
	cs, ss := c.Stats(), srv.Stats()
	if cs.Retries != 0 || cs.Dropped != 0 || ss.Dropped != 0 || ss.Replays != 0 {
		t.Errorf("clean line: client stats %+v, server stats %+v", cs, ss)
	}
	if cs.BytesOut != ss.BytesIn || cs.BytesIn != ss.BytesOut {
		t.Errorf("byte counts disagree: client out/in %d/%d, server in/out %d/%d", cs.BytesOut, cs.BytesIn, ss.BytesIn, ss.BytesOut)
	}
}

func TestLargeChunkedPayloads(t *testing.T) {
	// About 100 KiB each way: more than 63 chunks of 1 KiB, so the chunk
	// sequence number wraps; and once more with the largest chunk size.
	big := [][]byte{filled(60000, 1), filled(42000, 2)}
	h := HandlerFunc(func(ctx context.Context, mt MsgType, p []byte) (any, error) {
		switch mt {
		case MsgInstallChain:
			var req InstallChainRequest
			if err := Unmarshal(p, &req); err != nil {
				return nil, err
			}
			if !reflect.DeepEqual(req.Chain, big) {
				return nil, Errorf(ErrBadRequest, "chain differs")
			}
			return InstallChainResponse{SHA256: filled(32, 3)}, nil
		case MsgReadChain:
			return ReadChainResponse{Chain: big}, nil
		}
		return nil, Errorf(ErrUnsupported, "no")
	})
	for _, chunk := range []int{DefaultChunkSize, MaxChunkSize} {
		c, srv := pair(t, h, []ClientOption{WithChunkSize(chunk)}, WithChunkSize(chunk))
		if _, err := c.InstallChain(context.Background(), InstallChainRequest{Chain: big}); err != nil {
			t.Fatalf("chunk %d: InstallChain: %v", chunk, err)
		}
		rc, err := c.ReadChain(context.Background())
		if err != nil {
			t.Fatalf("chunk %d: ReadChain: %v", chunk, err)
		}
		if !reflect.DeepEqual(rc.Chain, big) {
			t.Fatalf("chunk %d: chain differs", chunk)
		}
		wantFrames := uint64(2 * 102000 / chunk)
		waitFor(t, 2*time.Second, func() bool { return srv.Stats().MessagesOut == 2 })
		if st := srv.Stats(); st.FramesOut+st.FramesIn < wantFrames || st.MessagesOut != 2 || st.ChunkErrors != 0 {
			t.Errorf("chunk %d: server stats %+v, want >= %d frames in 2+2 messages", chunk, st, wantFrames)
		}
	}
}

func TestVersionNegotiation(t *testing.T) {
	dev := newFakeDevice()
	tests := []struct {
		name    string
		station []uint8
		agent   []uint8
		want    uint8
		wantErr error
	}{
		{"same", []uint8{1}, []uint8{1}, 1, nil},
		{"station newer", []uint8{1, 2, 3}, []uint8{1, 2}, 2, nil},
		{"agent newer", []uint8{1}, []uint8{1, 2}, 1, nil},
		{"agent dropped version 1", []uint8{1, 2}, []uint8{2}, 2, nil},
		{"none in common", []uint8{3}, []uint8{1, 2}, 0, ErrVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := pair(t, dev, []ClientOption{WithVersions(tt.station...)}, WithVersions(tt.agent...))
			h, err := c.Hello(context.Background())
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Hello error = %v, want %v", err, tt.wantErr)
				}
				if c.Version() != 0 {
					t.Errorf("Version() = %d after failed Hello", c.Version())
				}
				return
			}
			if err != nil {
				t.Fatalf("Hello: %v", err)
			}
			if h.Version != tt.want || c.Version() != tt.want {
				t.Fatalf("negotiated %d (client %d), want %d", h.Version, c.Version(), tt.want)
			}
			// Later frames carry the negotiated version and are accepted.
			if _, err := c.SignDigest(context.Background(), SignDigestRequest{Digest: filled(32, 1)}); err != nil {
				t.Fatalf("SignDigest after Hello: %v", err)
			}
		})
	}

	t.Run("frame of unknown version", func(t *testing.T) {
		m, s := openPty(t)
		startServer(t, s, dev)
		raw := NewConn(m)
		if err := raw.WriteMessage(Message{Version: 9, ID: 7, Type: MsgGetEK, Payload: []byte{0xa0}}, 0); err != nil {
			t.Fatal(err)
		}
		resp := readWithin(t, raw, 2*time.Second)
		if resp.Type != MsgError || resp.Version != BaseVersion || resp.ID != 7 {
			t.Fatalf("reply = %+v, want MsgError in version %d for id 7", resp, BaseVersion)
		}
		var er ErrorResponse
		if err := Unmarshal(resp.Payload, &er); err != nil || ErrorCode(er.Code) != ErrVersion {
			t.Fatalf("error reply %+v (%v), want ErrVersion", er, err)
		}
	})
}

// readWithin reads one message other than a NAK from c, or fails the test
// after d.
func readWithin(t *testing.T, c *Conn, d time.Duration) Message {
	t.Helper()
	type res struct {
		m   Message
		err error
	}
	ch := make(chan res, 1)
	go func() {
		for {
			m, err := c.ReadMessage()
			if err == nil && m.ID == 0 && m.Type == MsgError {
				continue // NAK of a damaged frame
			}
			ch <- res{m, err}
			return
		}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("read: %v", r.err)
		}
		return r.m
	case <-time.After(d):
		t.Fatalf("no message within %v", d)
	}
	return Message{}
}

// rawFrame COBS-encodes decoded bytes and appends a delimiter, bypassing
// the CRC computation of EncodeFrame.
func rawFrame(decoded []byte) []byte {
	var e cobsEncoder
	out := e.begin(nil)
	out = e.write(out, decoded)
	out = e.end(out)
	return append(out, Delimiter)
}

func mustFrame(t testing.TB, f Frame) []byte {
	t.Helper()
	b, err := EncodeFrame(nil, f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHostileLine feeds a real Server, over a pty, everything a bad cable
// or a confused peer can produce, interleaved with valid requests, and checks
// that each valid request is answered and each bad frame counted.
func TestHostileLine(t *testing.T) {
	dev := newFakeDevice()
	m, s := openPty(t)
	srv := startServer(t, s, dev)
	raw := NewConn(m)
	signReq, _ := Marshal(SignDigestRequest{Digest: filled(32, 9)})
	id := uint32(100)
	valid := func() []byte {
		id++
		return mustFrame(t, Frame{Version: 1, ID: id, Type: MsgSignDigest, Payload: signReq})
	}
	expectAnswer := func(name string) {
		t.Helper()
		r := readWithin(t, raw, 3*time.Second)
		if r.ID != id || r.Type != MsgSignDigest || !r.Response {
			t.Fatalf("%s: reply %+v, want SignDigest response to id %d", name, r, id)
		}
	}
	write := func(b []byte) {
		t.Helper()
		if _, err := m.Write(b); err != nil {
			t.Fatal(err)
		}
	}

	// Garbage (no delimiter) before a frame: the garbage and the frame merge
	// into one bad frame unless the sender starts with a delimiter, which
	// this package's writer does; simulate both.
	write([]byte("\x13\x11+++ATZ\r\nlogin: garbage"))
	write(append([]byte{Delimiter}, valid()...))
	expectAnswer("garbage before")

	// Garbage between frames, delimited.
	write(append(append([]byte{Delimiter}, []byte("\xff\xfe\x01\x02noise")...), Delimiter))
	write(valid())
	expectAnswer("garbage between")

	before := srv.Stats()
	// Bad CRC.
	dec := []byte{1, 0, 0, 0, 0, 200, byte(MsgSignDigest)}
	dec = append(dec, signReq...)
	dec = append(dec, 0xde, 0xad, 0xbe, 0xef)
	write(rawFrame(dec))
	// Truncated frame: the first half of a valid frame, then a delimiter.
	v := valid()
	id-- // not sent whole
	write(append(v[:len(v)/2:len(v)/2], Delimiter))
	// Too short to hold a header.
	write(rawFrame([]byte{1, 2, 3}))
	// Invalid COBS (code byte pointing past the end).
	write([]byte{0x40, 1, 2, Delimiter})
	write(valid())
	expectAnswer("after bad frames")
	after := srv.Stats()
	crc, mal := after.CRCErrors-before.CRCErrors, after.Malformed-before.Malformed
	if crc < 1 || mal < 2 || crc+mal < 4 {
		t.Errorf("CRC errors +%d, malformed +%d; want >= 1, >= 2 and 4 in all", crc, mal)
	}

	// Oversize: 1 MiB without a delimiter, then a valid frame. The reader
	// never buffers more than MaxFrameSize.
	noise := bytes.Repeat([]byte{0x5a}, 1<<20)
	write(append([]byte{Delimiter}, noise...))
	write(append([]byte{Delimiter}, valid()...))
	expectAnswer("after oversize")
	if st := srv.Stats(); st.Oversize != 1 {
		t.Errorf("oversize = %d, want 1", st.Oversize)
	}
	if peak := srv.conn.frameBufPeak(); peak > MaxFrameSize {
		t.Errorf("frame buffer grew to %d bytes, bound is %d", peak, MaxFrameSize)
	}

	// Unknown message type: error reply with ErrUnsupported, handler not called.
	id++
	write(mustFrame(t, Frame{Version: 1, ID: id, Type: MsgType(0x42), Payload: []byte{0xa0}}))
	r := readWithin(t, raw, 3*time.Second)
	var er ErrorResponse
	if r.Type != MsgError || r.ID != id || Unmarshal(r.Payload, &er) != nil || ErrorCode(er.Code) != ErrUnsupported {
		t.Fatalf("unknown type: reply %+v / %+v, want ErrUnsupported", r, er)
	}
	if !strings.Contains(er.Message, "0x42") {
		t.Errorf("unknown type message %q does not name the type", er.Message)
	}

	// Malformed CBOR and unknown CBOR fields: ErrBadRequest, handler not called.
	calls := dev.count(MsgSignDigest)
	for _, p := range [][]byte{{0xff}, {0xa1, 0x09, 0x01}, append(signReq, 0x00)} {
		id++
		write(mustFrame(t, Frame{Version: 1, ID: id, Type: MsgSignDigest, Payload: p}))
		r := readWithin(t, raw, 3*time.Second)
		if r.Type != MsgError || Unmarshal(r.Payload, &er) != nil || ErrorCode(er.Code) != ErrBadRequest {
			t.Fatalf("payload %x: reply %+v / %+v, want ErrBadRequest", p, r, er)
		}
	}
	if dev.count(MsgSignDigest) != calls {
		t.Errorf("handler called for malformed requests")
	}

	// Frames in the wrong direction (an echo of a response) are dropped.
	write(mustFrame(t, Frame{Version: 1, Flags: FlagResponse, ID: 1, Type: MsgSignDigest, Payload: []byte{0xa0}}))
	write(valid())
	expectAnswer("after echo")
	if srv.Stats().WrongDir != 1 {
		t.Errorf("wrong-direction drops = %d, want 1", srv.Stats().WrongDir)
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestReplayedRequestID sends the same CreateKeys request id again (as a
// station does after a lost response): the answer comes from the cache and
// the handler runs once.
func TestReplayedRequestID(t *testing.T) {
	dev := newFakeDevice()
	m, s := openPty(t)
	srv := startServer(t, s, dev)
	raw := NewConn(m)
	req, _ := Marshal(CreateKeysRequest{Nonce: filled(32, 1)})
	send := func(id uint32, mt MsgType, p []byte) Message {
		t.Helper()
		if err := raw.WriteMessage(Message{Version: 1, ID: id, Type: mt, Payload: p}, 0); err != nil {
			t.Fatal(err)
		}
		r := readWithin(t, raw, 3*time.Second)
		if r.ID != id {
			t.Fatalf("reply id %d, want %d", r.ID, id)
		}
		return r
	}
	first := send(1000, MsgCreateKeys, req)
	again := send(1000, MsgCreateKeys, req)
	if !bytes.Equal(first.Payload, again.Payload) || again.Type != MsgCreateKeys {
		t.Fatalf("replayed response differs")
	}
	var ck CreateKeysResponse
	if err := Unmarshal(again.Payload, &ck); err != nil || !ck.Created {
		t.Fatalf("replayed CreateKeys: %v, Created=%v; want the first (Created) answer", err, ck.Created)
	}
	// Other requests in between, then the old id once more: still cached.
	sig, _ := Marshal(SignDigestRequest{Digest: filled(32, 2)})
	for i := range uint32(DefaultCacheSize - 1) {
		send(2000+i, MsgSignDigest, sig)
	}
	send(1000, MsgCreateKeys, req)
	if n := dev.count(MsgCreateKeys); n != 1 {
		t.Fatalf("CreateKeys handler ran %d times, want 1", n)
	}
	if st := srv.Stats(); st.Replays != 2 {
		t.Errorf("replays = %d, want 2", st.Replays)
	}
	// An old id with a different request is a new request, not a replay.
	req2, _ := Marshal(CreateKeysRequest{Nonce: filled(32, 3)})
	send(1000, MsgCreateKeys, req2)
	if n := dev.count(MsgCreateKeys); n != 2 {
		t.Fatalf("CreateKeys handler ran %d times after a reused id with new content, want 2", n)
	}
	// After DefaultCacheSize newer requests the entry is evicted.
	for i := range uint32(DefaultCacheSize) {
		send(3000+i, MsgSignDigest, sig)
	}
	send(1000, MsgCreateKeys, req2)
	if n := dev.count(MsgCreateKeys); n != 3 {
		t.Fatalf("CreateKeys handler ran %d times after eviction, want 3", n)
	}
}

// TestClientRetryUsesCache: the agent is slower than the client's timeout,
// so the client sends the request again with the same id; the agent answers
// the duplicate from its cache and creates keys once.
func TestClientRetryUsesCache(t *testing.T) {
	dev := newFakeDevice()
	dev.delay = 150 * time.Millisecond
	c, srv := pair(t, dev, []ClientOption{WithTimeouts(map[MsgType]time.Duration{MsgCreateKeys: 100 * time.Millisecond}), WithRetries(3)})
	resp, err := c.CreateKeys(context.Background(), CreateKeysRequest{Nonce: filled(32, 1)})
	if err != nil {
		t.Fatalf("CreateKeys: %v", err)
	}
	if !resp.Created {
		t.Errorf("Created = false, want the first execution's answer")
	}
	if n := dev.count(MsgCreateKeys); n != 1 {
		t.Fatalf("CreateKeys executed %d times, want 1", n)
	}
	if c.Stats().Retries < 1 {
		t.Errorf("client retries = %d, want >= 1", c.Stats().Retries)
	}
	// Let the server drain the duplicates; they must be replays.
	waitFor(t, 2*time.Second, func() bool { return srv.Stats().Replays >= c.Stats().Retries })
	if n := dev.count(MsgCreateKeys); n != 1 {
		t.Fatalf("CreateKeys executed %d times after duplicates drained, want 1", n)
	}
	// The late duplicate responses are stale for the next call, which still
	// gets its own answer.
	if _, err := c.SignDigest(context.Background(), SignDigestRequest{Digest: filled(32, 1)}); err != nil {
		t.Fatalf("SignDigest after retries: %v", err)
	}
	if c.Stats().Stale < 1 {
		t.Errorf("stale responses = %d, want >= 1; client %+v server %+v", c.Stats().Stale, c.Stats(), srv.Stats())
	}
}

// TestAgentNeverAnswers: nothing reads the other end of the pty.
func TestAgentNeverAnswers(t *testing.T) {
	m, _ := openPty(t)
	const timeout = 100 * time.Millisecond
	c := newClientOn(t, m, WithTimeouts(map[MsgType]time.Duration{MsgSignDigest: timeout}), WithRetries(2))
	start := time.Now()
	_, err := c.SignDigest(context.Background(), SignDigestRequest{Digest: filled(32, 1)})
	elapsed := time.Since(start)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if elapsed < 3*timeout || elapsed > 3*timeout+time.Second {
		t.Errorf("gave up after %v, want about %v", elapsed, 3*timeout)
	}
	if st := c.Stats(); st.Retries != 2 || st.Timeouts != 3 || st.MessagesOut != 3 {
		t.Errorf("stats %+v, want 2 retries, 3 timeouts, 3 sends", st)
	}

	// Context cancellation wins over the timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err = c.SignDigest(ctx, SignDigestRequest{Digest: filled(32, 1)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}

	// Close releases a waiting call and fails later ones.
	done := make(chan error, 1)
	go func() {
		_, err := c.SignDigest(context.Background(), SignDigestRequest{Digest: filled(32, 1)})
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("in-flight call after Close: %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not release the in-flight call")
	}
	if _, err := c.GetEK(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after Close: %v, want ErrClosed", err)
	}
}

// TestStaleResponsesIgnored: an agent that first answers with a wrong id
// (a late answer to an earlier request) and then the right one.
func TestStaleResponsesIgnored(t *testing.T) {
	m, s := openPty(t)
	c := newClientOn(t, m)
	agent := NewConn(s)
	go func() {
		for {
			req, err := agent.ReadMessage()
			if err != nil {
				return
			}
			p, _ := Marshal(SignDigestResponse{Signature: []byte("stale")})
			_ = agent.WriteMessage(Message{Version: 1, Response: true, ID: req.ID - 1, Type: req.Type, Payload: p}, 0)
			p, _ = Marshal(SignDigestResponse{Signature: []byte("fresh")})
			_ = agent.WriteMessage(Message{Version: 1, Response: true, ID: req.ID, Type: req.Type, Payload: p}, 0)
		}
	}()
	for range 3 {
		r, err := c.SignDigest(context.Background(), SignDigestRequest{Digest: filled(32, 1)})
		if err != nil {
			t.Fatalf("SignDigest: %v", err)
		}
		if string(r.Signature) != "fresh" {
			t.Fatalf("got %q, want the response with the right id", r.Signature)
		}
	}
	if st := c.Stats(); st.Stale != 3 {
		t.Errorf("stale = %d, want 3", st.Stale)
	}
}

// TestConcurrentCallsSerialised: many goroutines share one Client; every
// call gets its own answer.
func TestConcurrentCallsSerialised(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, mt MsgType, p []byte) (any, error) {
		var req SignDigestRequest
		if err := Unmarshal(p, &req); err != nil {
			return nil, err
		}
		return SignDigestResponse{Signature: append([]byte("sig:"), req.Digest...)}, nil
	})
	c, _ := pair(t, h, nil)
	errs := make(chan error, 40)
	for g := range 8 {
		go func() {
			for i := range 5 {
				d := filled(32, byte(g*10+i))
				r, err := c.SignDigest(context.Background(), SignDigestRequest{Digest: d})
				if err == nil && !bytes.Equal(r.Signature, append([]byte("sig:"), d...)) {
					err = errors.New("answer for another call")
				}
				errs <- err
			}
		}()
	}
	for range 40 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestHandlerFailures(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, mt MsgType, p []byte) (any, error) {
		switch mt {
		case MsgGetEK:
			return nil, errors.New("tpm2: NV read failed")
		case MsgReadChain:
			panic("bug")
		case MsgLock:
			return nil, fmt.Errorf("lock: %w", &Error{Code: ErrBusy, Message: "try again"})
		case MsgSignDigest:
			return ReadChainResponse{Chain: [][]byte{{1}}}, nil // wrong struct: agent bug
		case MsgHello:
			return GetEKResponse{}, nil // wrong struct for Hello
		}
		return nil, nil
	})
	c, _ := pair(t, h, nil)
	ctx := context.Background()
	if _, err := c.GetEK(ctx); !errors.Is(err, ErrInternal) || !strings.Contains(err.Error(), "NV read failed") {
		t.Errorf("plain error: %v, want ErrInternal with the text", err)
	}
	if _, err := c.ReadChain(ctx); !errors.Is(err, ErrInternal) {
		t.Errorf("panic: %v, want ErrInternal", err)
	}
	if err := c.Lock(ctx); !errors.Is(err, ErrBusy) || !errors.Is(err, &Error{Code: ErrBusy}) {
		t.Errorf("busy: %v, want ErrBusy", err)
	}
	if _, err := c.SignDigest(ctx, SignDigestRequest{Digest: filled(32, 1)}); !errors.Is(err, ErrInternal) {
		t.Errorf("wrong response struct: %v, want ErrInternal", err)
	}
	if _, err := c.Hello(ctx); !errors.Is(err, ErrInternal) {
		t.Errorf("wrong Hello struct: %v, want ErrInternal", err)
	}
	// The server survives all of it.
	if err := c.Reset(ctx); err != nil {
		t.Errorf("Reset after failures: %v", err)
	}
}

func TestServeStopsOnCancelAndClose(t *testing.T) {
	m, s := openPty(t)
	srv := NewServer(s, newFakeDevice(), WithLogger(testLogger()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	c := newClientOn(t, m)
	if _, err := c.Hello(context.Background()); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve after cancel = %v", err)
	}
	// Serve again on the same line, then close the line under it.
	go func() { done <- srv.Serve(context.Background()) }()
	if _, err := c.Hello(context.Background()); err != nil {
		t.Fatalf("Hello after restart: %v", err)
	}
	_ = s.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Serve returned nil after the line closed")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Serve did not return after the line closed")
	}
}
