//go:build !unix

package ca

import "testing"

func testReadPassphraseFD(t *testing.T) { t.Helper() }
