//go:build unix

package db

import (
	"path/filepath"
	"syscall"
)

var (
	errENOSPC error = syscall.ENOSPC
	errEROFS  error = syscall.EROFS
	errEACCES error = syscall.EACCES
)

// onReadOnlyFS reports whether path (or, if it does not exist, its directory) lies on a
// read-only file system. access(2) reports EROFS even to root.
func onReadOnlyFS(path string) bool {
	const wOK = 2
	err := syscall.Access(path, wOK)
	if err == syscall.ENOENT {
		err = syscall.Access(filepath.Dir(path), wOK)
	}
	return err == syscall.EROFS
}
