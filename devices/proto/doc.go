// Package proto implements the wire protocol spoken between the provisioning
// station and the device agent over a serial line (or a pseudo-terminal in
// tests and the demo).
//
// # Layers
//
// Framing: every frame is COBS-encoded and delimited by 0x00 bytes, so a
// receiver that sees garbage, a truncated frame or a corrupted byte drops at
// most the frame it is in and resynchronises at the next 0x00. A decoded frame
// is
//
//	version(1) | flags(1) | request id (uint32 BE) | message type(1) | CBOR payload | CRC-32C (uint32 BE)
//
// The encoded size of one frame is bounded by [MaxFrameSize]; the reader
// enforces the bound while it accumulates bytes, before anything is allocated
// for a frame, and skips to the next delimiter when the bound is exceeded.
// Payloads larger than one frame are split into chunks (flag bits carry
// "more chunks follow" and a chunk sequence number) and reassembled up to
// [MaxMessageSize].
//
// Messages: request/response pairs with CBOR payloads ([HelloRequest],
// [GetEKResponse], ...). Each request carries a request id; the station
// ([Client]) retries with the same id when a response does not arrive in time
// or arrives corrupted, and the agent ([Server]) answers a repeated id from a
// small cache of recent responses, so a retried CreateKeys never creates a
// second key. Error replies carry an [ErrorCode] and a sentence meant for the
// operator ([Error]).
//
// Timeouts are per message type and sized for real chips rather than
// simulators; see [DefaultTimeout].
//
// The byte-level specification with an example exchange is docs/protocol.md.
package proto
