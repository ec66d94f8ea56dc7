package cli

// Command names a top-level command of wsc that the lean front binary
// (cmd/wsc/front) does not run itself but hands to the full station binary
// (wsc-station): the front lists it in `wsc --help` with this Short text, so
// that the help reads the same from either binary. cmd/wsc's
// TestFrontCommandList fails when this list and the station's command tree
// disagree (a command added, removed or reworded on one side only).
type Command struct {
	// Name is the command's name (its first word of Use).
	Name string
	// Short is its one-line description, as the station binary has it.
	Short string
}

// StationCommands are the top-level commands only the full binary runs.
// The front runs version, verify, qa and the help topics itself.
var StationCommands = []Command{
	{Name: "audit", Short: "The station database's audit ledger: verify it, create and pin its key, repair its witness file"},
	{Name: "ca", Short: "CA ceremonies: init, intermediate csr/sign/install, root rollover/retire, revoke, crl, import, bundle, status, inspect"},
	{Name: "db", Short: "Read the station database"},
	{Name: "demo", Short: "Provision simulated TPM (and secure-element) devices end to end with a fresh private CA"},
	{Name: "operator", Short: "Manage the operators allowed to run the station"},
	{Name: "owner-auth", Short: "The escrow key TPM owner authorisations are sealed to, and unsealing one at the RMA desk"},
	{Name: "plant", Short: "The plant registry on PostgreSQL: set-up, sync, checks, revocation, bundle, reports"},
	{Name: "policy", Short: "Signed PCR policies for code-signing keys bound to measured boot"},
	{Name: "provision", Short: "Provision the one device on --port, headless, and exit (0 = provisioned)"},
	{Name: "redbin", Short: "Devices held in the red bin (by chip identity), and their release by a supervisor"},
	{Name: "sign", Short: "Sign a WebAssembly module with a software key or a PKCS#11 token, embedding the certificate chain"},
	{Name: "sim", Short: "Run a simulated bench (TPM and secure-element devices on pseudo-terminals) with a ready station.yaml"},
	{Name: "station", Short: "Run the bench: provision every device plugged into the configured slots"},
}

// IsStationCommand reports whether name is one of StationCommands.
func IsStationCommand(name string) bool {
	for _, c := range StationCommands {
		if c.Name == name {
			return true
		}
	}
	return false
}
