package testenv

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc/PID/stat's times: USER_HZ, 100 on every
// Linux architecture Go supports (sysconf(_SC_CLK_TCK) is not in syscall).
const clockTick = 10 * time.Millisecond

// ProcCPU returns the user+sys CPU time process pid has used (own), and
// what its children that it has waited for used (reaped), from
// /proc/PID/stat, in 10 ms ticks; ok is false when the process is gone.
func ProcCPU(pid int) (own, reaped time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// pid (comm) state ...: fields 14-17 are utime stime cutime cstime,
	// counted from 1; comm may hold spaces and ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3
	if len(f) < 15 {
		return 0, 0, false
	}
	var t [4]int64
	for k := range t {
		if t[k], err = strconv.ParseInt(f[11+k], 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return time.Duration(t[0]+t[1]) * clockTick, time.Duration(t[2]+t[3]) * clockTick, true
}

// CPU returns the user+sys CPU time the instance's processes have used so
// far: every process of its session (Postfix's master and the services it
// runs, the Sendmail daemon and its children), zombies included, plus
// what the session leader's exited children used. A child that exits
// between two calls moves from its own count to its parent's reaped count,
// so the difference of two calls is what the instance used between them
// (a child reaped by another child of the session, rather than by the
// leader, would be counted only while alive; Postfix's services are all
// the master's children). 0 when no instance runs.
func (m *MTA) CPU() time.Duration {
	if m.leader == 0 {
		return 0
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var sum time.Duration
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, ok := procStat(pid)
		if !ok || st.session != m.leader {
			continue
		}
		own, reaped, ok := ProcCPU(pid)
		if !ok {
			continue
		}
		sum += own
		if pid == m.leader {
			sum += reaped
		}
	}
	return sum
}
