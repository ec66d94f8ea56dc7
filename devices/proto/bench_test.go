package proto

import (
	"context"
	"fmt"
	"reflect"
	"testing"
)

// baud115200 is the byte time of a 115200-baud 8N1 line: 10 bit times per
// byte (start, 8 data, stop).
const baud115200 = 10.0 / 115200.0 // seconds per byte

// appBytes counts the application data in a message struct: the contents
// of byte strings and text, 4 bytes per uint32, 1 per uint8, 1 per bool.
// That is what a hand-packed binary format would have to carry at the least.
func appBytes(v any) int {
	return appBytesOf(reflect.Indirect(reflect.ValueOf(v)))
}

func appBytesOf(v reflect.Value) int {
	switch v.Kind() {
	case reflect.Struct:
		n := 0
		for i := range v.NumField() {
			n += appBytesOf(v.Field(i))
		}
		return n
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return v.Len()
		}
		n := 0
		for i := range v.Len() {
			n += appBytesOf(v.Index(i))
		}
		return n
	case reflect.String:
		return v.Len()
	case reflect.Uint32:
		return 4
	case reflect.Uint8, reflect.Bool:
		return 1
	}
	return 0
}

// provisioningExchange runs the message sequence of one TPM provisioning
// (Hello, GetEK, CreateKeys, ActivateCredential, InstallChain, ReadChain,
// SignDigest, Lock) and returns the application bytes both ways.
func provisioningExchange(ctx context.Context, c *Client, x exchangeData) (int, error) {
	n := 0
	add := func(vs ...any) {
		for _, v := range vs {
			n += appBytes(v)
		}
	}
	hello, err := c.Hello(ctx)
	if err != nil {
		return n, fmt.Errorf("hello: %w", err)
	}
	add(HelloRequest{Versions: c.versions}, hello)

	ek, err := c.GetEK(ctx)
	if err != nil {
		return n, fmt.Errorf("get ek: %w", err)
	}
	add(ek)

	ckReq := CreateKeysRequest{Nonce: x.nonce, Subject: "SN-000001"}
	keys, err := c.CreateKeys(ctx, ckReq)
	if err != nil {
		return n, fmt.Errorf("create keys: %w", err)
	}
	add(ckReq, keys)

	acReq := ActivateCredentialRequest{CredentialBlob: x.credBlob, EncryptedSecret: x.encSecret}
	act, err := c.ActivateCredential(ctx, acReq)
	if err != nil {
		return n, fmt.Errorf("activate credential: %w", err)
	}
	add(acReq, act)

	icReq := InstallChainRequest{Chain: x.chain, Lock: true}
	inst, err := c.InstallChain(ctx, icReq)
	if err != nil {
		return n, fmt.Errorf("install chain: %w", err)
	}
	add(icReq, inst)

	rc, err := c.ReadChain(ctx)
	if err != nil {
		return n, fmt.Errorf("read chain: %w", err)
	}
	add(rc)

	sdReq := SignDigestRequest{Digest: x.digest}
	sig, err := c.SignDigest(ctx, sdReq)
	if err != nil {
		return n, fmt.Errorf("sign digest: %w", err)
	}
	add(sdReq, sig)

	if err := c.Lock(ctx); err != nil {
		return n, fmt.Errorf("lock: %w", err)
	}
	return n, nil
}

// TestWireOverhead enforces the overhead target of the design: the bytes on
// the wire for a whole provisioning exchange, both directions, framing,
// requests and CBOR included, stay within 1.15 × the application bytes.
func TestWireOverhead(t *testing.T) {
	dev := newFakeDevice()
	c, _ := pair(t, dev, nil)
	app, err := provisioningExchange(context.Background(), c, dev.data)
	if err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	wire := st.BytesIn + st.BytesOut
	ratio := float64(wire) / float64(app)
	t.Logf("provisioning exchange: %d application bytes, %d CBOR payload bytes, %d wire bytes: wire/app %.3f, wire/cbor %.3f; %.0f ms at 115200 baud",
		app, st.PayloadIn+st.PayloadOut, wire, ratio, float64(wire)/float64(st.PayloadIn+st.PayloadOut),
		float64(wire)*baud115200*1000)
	if ratio > 1.15 {
		t.Errorf("wire/app = %.3f, target <= 1.15", ratio)
	}
}

// BenchmarkProvisioningExchange runs the provisioning message sequence over
// a real pty and reports the wire overhead and what the exchange costs on a
// 115200-baud line (transfer time only; device time is extra).
func BenchmarkProvisioningExchange(b *testing.B) {
	dev := newFakeDevice()
	m, s := openPty(b)
	startServer(b, s, dev)
	c := newClientOn(b, m)
	ctx := context.Background()
	app := 0
	b.ResetTimer()
	for b.Loop() {
		n, err := provisioningExchange(ctx, c, dev.data)
		if err != nil {
			b.Fatal(err)
		}
		app += n
	}
	st := c.Stats()
	wire := float64(st.BytesIn + st.BytesOut)
	cbor := float64(st.PayloadIn + st.PayloadOut)
	b.ReportMetric(wire/float64(app), "wire/app")
	b.ReportMetric(wire/cbor, "wire/cbor")
	b.ReportMetric(wire/float64(b.N), "wire-B/op")
	b.ReportMetric(float64(app)/float64(b.N), "app-B/op")
	b.ReportMetric(wire/float64(b.N)*baud115200*1000, "ms@115200")
}
