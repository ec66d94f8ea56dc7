package sim

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// AgentPeakRSS returns the agent process's peak resident set size in bytes
// (VmHWM from /proc, Linux), read while the agent runs.
func (d *Device) AgentPeakRSS() (int64, error) {
	if d.agent == nil || d.agent.exited() {
		return 0, errors.New("agent is not running")
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", d.agent.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmHWM %q: %w", v, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}
