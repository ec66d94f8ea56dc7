package tpm

import (
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// evictKeys removes IAK and IDevID so that CreateKeys creates them again.
func evictKeys(tb testing.TB, d *Device) {
	tb.Helper()
	for _, h := range []uint32{d.cfg.IAKHandle, d.cfg.IDevIDHandle} {
		rp, found, err := d.readPublic(tpm2.TPMHandle(h))
		if err != nil {
			tb.Fatal(err)
		}
		if !found {
			continue
		}
		if _, err := (tpm2.EvictControl{Auth: d.ownerAuth(), ObjectHandle: tpm2.NamedHandle{Handle: tpm2.TPMHandle(h), Name: rp.Name}, PersistentHandle: tpm2.TPMHandle(h)}).Execute(d.tpm); err != nil {
			tb.Fatal(err)
		}
	}
}

func BenchmarkCreateKeys(b *testing.B) {
	d, _ := newDevice(b, DefaultConfig())
	if _, err := d.CreateKeys(nil); err != nil { // SRK persisted once
		b.Fatal(err)
	}
	for b.Loop() {
		b.StopTimer()
		evictKeys(b, d)
		b.StartTimer()
		ev, err := d.CreateKeys([]byte("nonce"))
		if err != nil || !ev.Created {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignDigest(b *testing.B) {
	d, _ := newDevice(b, DefaultConfig())
	if _, err := d.CreateKeys(nil); err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("x"))
	for b.Loop() {
		if _, err := d.SignDigest(digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCertify is CreateKeys with existing keys: lookups + TPM2_Certify.
func BenchmarkCertify(b *testing.B) {
	d, _ := newDevice(b, DefaultConfig())
	if _, err := d.CreateKeys(nil); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := d.CreateKeys([]byte("nonce")); err != nil {
			b.Fatal(err)
		}
	}
}

// chain2KB is a one-certificate chain of about 2 KB (content + header fit
// one 2048-byte index).
func chain2KB(b *testing.B) [][]byte {
	for sans := 40; ; sans++ {
		c := makeChain(b, 1, sans)
		if len(c[0]) >= 1900 {
			if len(c[0])+chainHeaderSize > 2048 {
				b.Fatalf("chain %d bytes", len(c[0]))
			}
			return c
		}
	}
}

func BenchmarkNVWrite2KB(b *testing.B) {
	d, _ := newDevice(b, DefaultConfig())
	chain := chain2KB(b)
	b.SetBytes(int64(len(chain[0])))
	for b.Loop() {
		if _, err := d.WriteChain(chain); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNVRead2KB(b *testing.B) {
	d, _ := newDevice(b, DefaultConfig())
	chain := chain2KB(b)
	if _, err := d.WriteChain(chain); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(chain[0])))
	for b.Loop() {
		if _, err := d.ReadChain(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkActivateCredential(b *testing.B) {
	d, _ := newDevice(b, DefaultConfig())
	ev, err := d.CreateKeys(nil)
	if err != nil {
		b.Fatal(err)
	}
	eks, err := d.EKs()
	if err != nil {
		b.Fatal(err)
	}
	for _, ek := range eks {
		b.Run(ek.Kind, func(b *testing.B) {
			secret := make([]byte, 32)
			rand.Read(secret)
			ekPub := mustPublic(b, ek.Public)
			encKey, err := tpm2.ImportEncapsulationKey(ekPub)
			if err != nil {
				b.Fatal(err)
			}
			name, _ := tpm2.ObjectName(mustPublic(b, ev.IAKPublic))
			blob, enc, err := tpm2.CreateCredential(rand.Reader, encKey, name.Buffer, secret)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := d.ActivateCredential(blob, enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLatencyProfile shows the profile's waits on top of swtpm.
func BenchmarkLatencyProfile(b *testing.B) {
	for _, profile := range []string{"", "slb9672"} {
		name := profile
		if name == "" {
			name = "none"
		}
		b.Run(name, func(b *testing.B) {
			tr, err := WithLatencyProfile(startSWTPM(b).open(b), profile)
			if err != nil {
				b.Fatal(err)
			}
			d, err := New(tr, DefaultConfig())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := d.CreateKeys(nil); err != nil {
				b.Fatal(err)
			}
			digest := sha256.Sum256([]byte("x"))
			b.Run("SignDigest", func(b *testing.B) {
				for b.Loop() {
					if _, err := d.SignDigest(digest[:]); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("CreateKeys", func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					evictKeys(b, d)
					b.StartTimer()
					if _, err := d.CreateKeys(nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
