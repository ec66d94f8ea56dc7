package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsc-project/wsc/db"
	"github.com/wsc-project/wsc/station"
)

// TestOwnerAuthKeygenUnseal: keygen writes the escrow pair (never over an
// existing one); unseal opens the recorded blob with the escrow private
// key and its passphrase only, prints the value tpm2-tools takes, and the
// ledger records who unsealed which record without the value.
func TestOwnerAuthKeygenUnseal(t *testing.T) {
	dir := t.TempDir()
	pass := secretFile(t, dir, "pass", "escrow passphrase for the rma desk", 0o600)
	wrong := secretFile(t, dir, "wrong", "not the escrow passphrase at all", 0o600)
	keys := filepath.Join(dir, "escrow")
	if code, out := execute(t, "owner-auth", "keygen", "-o", keys, "--passphrase-source", "file:"+pass); code != exitOK {
		t.Fatalf("keygen: exit %d\n%s", code, out)
	}
	if code, out := execute(t, "owner-auth", "keygen", "-o", keys, "--passphrase-source", "file:"+pass); code != exitUsage {
		t.Fatalf("keygen over an existing key: exit %d\n%s", code, out)
	}
	pub, err := station.LoadEscrowPublicKey(filepath.Join(keys, station.EscrowPublicFile))
	if err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	dbPath := filepath.Join(dir, "station.db")
	st, err := db.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureDevice(ctx, db.Device{Serial: "DEV-OA1", Backend: "tpm"}); err != nil {
		t.Fatal(err)
	}
	raw, _ := station.NewOwnerAuth()
	auth := station.OwnerAuth(raw)
	chip := []byte("chip-id-of-dev-oa1..............")
	sealed, err := station.SealOwnerAuth(pub, auth, station.OwnerAuthBinding{Serial: "DEV-OA1", ChipID: chip, WorkOrder: "WO-9"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.RecordOwnerAuth(ctx, db.OwnerAuthRecord{DeviceSerial: "DEV-OA1", ChipID: chip, WorkOrder: "WO-9", Policy: db.OwnerAuthSealed,
		EscrowKeyID: sealed.EscrowKeyID, Suite: sealed.Suite, Enc: sealed.Enc, Sealed: sealed.Sealed}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	key := filepath.Join(keys, station.EscrowPrivateFile)
	if code, out := execute(t, "owner-auth", "unseal", "--serial", "DEV-OA1", "--db", dbPath, "--key", key, "--passphrase-source", "file:"+wrong, "--actor", "rma"); code != exitUsage {
		t.Fatalf("unseal with a wrong passphrase: exit %d\n%s", code, out)
	}
	if code, out := execute(t, "owner-auth", "unseal", "--serial", "DEV-NONE", "--db", dbPath, "--key", key, "--passphrase-source", "file:"+pass, "--actor", "rma"); code != exitFailed {
		t.Fatalf("unseal of a device without a record: exit %d\n%s", code, out)
	}
	code, out := execute(t, "owner-auth", "unseal", "--serial", "DEV-OA1", "--db", dbPath, "--key", key, "--passphrase-source", "file:"+pass, "--actor", "rma", "--json")
	if code != exitOK {
		t.Fatalf("unseal: exit %d\n%s", code, out)
	}
	var got struct {
		OwnerAuth string `json:"owner_auth"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &got); err != nil || got.OwnerAuth != auth.Hex() {
		t.Fatalf("unsealed %q, %v", got.OwnerAuth, err)
	}
	st, err = db.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	entries, err := st.AuditEntries(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var unseals int
	for _, e := range entries {
		if strings.Contains(string(e.Detail), strings.TrimPrefix(auth.Hex(), "hex:")) {
			t.Fatalf("the ledger holds the owner authorisation: %s %s", e.Kind, e.Detail)
		}
		if e.Kind == "owner_auth.unseal" && e.Actor == "rma" {
			unseals++
		}
	}
	if unseals != 1 {
		t.Fatalf("%d unseal rows in the ledger, want 1", unseals)
	}
}
