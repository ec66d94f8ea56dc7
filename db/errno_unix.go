//go:build unix

package db

import "syscall"

var (
	errENOSPC error = syscall.ENOSPC
	errEROFS  error = syscall.EROFS
	errEACCES error = syscall.EACCES
)
