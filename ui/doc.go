// Package ui holds the terminal views of wsc (bubbletea models):
//
//   - BenchModel, the operator bench: a login screen, then a card per slot,
//     counters, the selected slot's last error with what to do about it, a
//     scan field for label barcodes and a status line (wsc station);
//   - the QA screen (wsc qa) lives in the sub-package ui/qa, which does not
//     import station, so that the lean wsc front binary links it without the
//     station. wsc demo uses BenchModel too, on a simulated bench.
//
// Models are pure: Update and View do no I/O and never read the clock.
// Calls into the station (BenchControl), the authenticator and the verifier
// run in tea.Cmds that return typed result messages; station events are sent
// into the program as EventMsg; time comes from those messages or from the
// clock injected in the options. The views talk to the station and wasmsign
// only through interfaces defined here by their consumer (ARCHITECTURE.md §2),
// never to db or devices.
package ui
