package main

import "time"

// unlockTime is how long opening the CA and the audit key took (PKCS#8
// decryption, once per shift); start-up figures exclude it.
var unlockTime time.Duration
