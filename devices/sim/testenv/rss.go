package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// RunPeakRSS starts cmd, waits for it and returns its own peak resident set
// in bytes (VmHWM of /proc/PID/status) with cmd.Wait's error. VmHWM only
// grows, so the largest value read while the process runs (every 5 ms) is
// its peak; a program that streams reaches its steady state within its
// first megabytes. getrusage's ru_maxrss of a child is not used: Linux
// carries over the high-water mark of the address space exec replaced (the
// test binary's, much larger under -race). A peak of 0 means /proc could not
// be read: the caller must treat it as a failure.
func RunPeakRSS(cmd *exec.Cmd) (int64, error) {
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var peak int64
	for {
		if v := vmHWM(cmd.Process.Pid); v > peak {
			peak = v
		}
		select {
		case err := <-done:
			return peak, err
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// vmHWM returns the peak resident set of process pid's own address space
// (VmHWM in /proc/PID/status), in bytes; 0 when it cannot be read.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
