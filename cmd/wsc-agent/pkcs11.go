//go:build cgo && pkcs11

package main

import (
	"io"

	"github.com/wsc-project/wsc/devices/agent"
)

func init() {
	openPKCS11 = func(uri string) (agent.Backend, io.Closer, error) {
		b, err := agent.OpenPKCS11Backend(uri)
		if err != nil {
			return nil, nil, err
		}
		return b, b, nil
	}
}
