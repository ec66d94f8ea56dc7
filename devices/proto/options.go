package proto

import (
	"log/slog"
	"maps"
	"time"
)

// ClientOption configures a Client.
type ClientOption interface{ applyClient(*Client) }

// ServerOption configures a Server.
type ServerOption interface{ applyServer(*Server) }

// Option configures both a Client and a Server.
type Option interface {
	ClientOption
	ServerOption
}

type clientOptionFunc func(*Client)

func (f clientOptionFunc) applyClient(c *Client) { f(c) }

type serverOptionFunc func(*Server)

func (f serverOptionFunc) applyServer(s *Server) { f(s) }

type bothOption struct {
	c func(*Client)
	s func(*Server)
}

func (o bothOption) applyClient(c *Client) { o.c(c) }
func (o bothOption) applyServer(s *Server) { o.s(s) }

// WithLogger sets the logger (default slog.Default()). Payload bytes are
// logged at debug level only, and only as sizes.
func WithLogger(l *slog.Logger) Option {
	return bothOption{
		c: func(c *Client) {
			if l != nil {
				c.log = l
			}
		},
		s: func(s *Server) {
			if l != nil {
				s.log = l
			}
		},
	}
}

// WithChunkSize sets the payload bytes per frame for messages this side
// sends (default DefaultChunkSize, at most MaxChunkSize). Smaller chunks
// lose less to a corrupted byte; larger ones cost less framing.
func WithChunkSize(n int) Option {
	n = min(max(n, 16), MaxChunkSize)
	return bothOption{
		c: func(c *Client) { c.chunkSize = n },
		s: func(s *Server) { s.chunkSize = n },
	}
}

// WithVersions sets the protocol versions this side speaks (default
// {CurrentVersion}). It exists for testing negotiation and for staged
// upgrades.
func WithVersions(v ...uint8) Option {
	v = append([]uint8(nil), v...)
	return bothOption{
		c: func(c *Client) { c.versions = v },
		s: func(s *Server) { s.versions = v },
	}
}

// WithTimeouts overrides the per-attempt timeout of some message types;
// the others keep DefaultTimeout.
func WithTimeouts(m map[MsgType]time.Duration) ClientOption {
	m = maps.Clone(m)
	return clientOptionFunc(func(c *Client) {
		for t, d := range m {
			if d > 0 {
				c.timeouts[t] = d
			}
		}
	})
}

// WithRetries sets how many times a request is sent again, with the same
// request id, after a timeout or a corrupted response (default
// DefaultRetries; 0 sends each request once).
func WithRetries(n int) ClientOption {
	return clientOptionFunc(func(c *Client) { c.retries = max(n, 0) })
}

// WithCacheSize sets how many recent responses the Server keeps for
// answering repeated request ids (default DefaultCacheSize, minimum 1).
func WithCacheSize(n int) ServerOption {
	return serverOptionFunc(func(s *Server) { s.cache.size = max(n, 1) })
}
