// Package db is the station's SQLite store: work orders, operators, devices, keys,
// certificates, provisioning runs, QA verifications and a hash-chained audit ledger.
//
// # Durability and sharing
//
// The file is opened in WAL mode with foreign keys on, a busy timeout and
// synchronous=FULL, so that a commit that records an issuance survives a power cut, and so
// that the station and a QA process (wsc verify) can use the same file at once: readers
// see a consistent snapshot and never block the writer; writers of both processes take the
// write lock up front (BEGIN IMMEDIATE) and wait for each other up to the busy timeout.
// The schema is migrated forward on Open by embedded, numbered SQL files (migrations/),
// each applied in its own transaction together with PRAGMA user_version.
//
// # Exactly-once issuance
//
//	BeginIssue     intent committed before the CA signs (or: existing live cert → re-deliver)
//	CompleteIssue  one transaction: key row, certificate row, supersession (revocation,
//	               reason superseded) of the device's previous certificate, audit rows
//	MarkDelivered  chain written to the device
//	MarkConfirmed  chain read back and equal → device provisioned
//
// A partial unique index (certificates(device_id) WHERE revoked_at IS NULL) makes two live
// certificates for one device impossible whatever the code path.
//
// # Audit ledger
//
// Every state change appends a row in the same transaction. Each row stores the SHA-256
// of the previous row and its own hash over (sequence, time, kind, actor, detail, previous
// hash); a head row holds the last sequence and hash. Rows that write a covered table
// (certificates, revocations, device bindings, keys, work orders, operators, QA verdicts;
// ledger.go) carry the SHA-256 of the rows written in their detail. With WithAuditSigner
// the store signs a checkpoint row every N rows with a dedicated audit key; with
// WithWitness each checkpoint is also appended to a witness file outside the database.
// VerifyAudit reports the first edited, deleted, inserted or reordered row, bad, missing
// or unpinned checkpoints, a database that ends before its witness, and every covered row
// that does not match the ledger.
//
// # Errors
//
// Driver errors are mapped to the sentinel errors of this package (ErrNotFound,
// ErrDuplicate, ErrDiskFull, ErrReadOnly …) at the boundary, with the driver error kept in
// the chain; callers branch with errors.Is.
package db
