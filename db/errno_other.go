//go:build !unix

package db

import "errors"

var (
	errENOSPC = errors.New("no space left on device")
	errEROFS  = errors.New("read-only file system")
	errEACCES = errors.New("permission denied")
)

func onReadOnlyFS(string) bool { return false }
