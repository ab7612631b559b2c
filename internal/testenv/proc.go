// The process table under /proc: whether a process lives, the processes
// of a session, and the CPU time a process has used.

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

// ProcessAlive reports whether pid exists and is not a zombie.
func ProcessAlive(pid int) bool {
	st, ok := procStat(pid)
	return ok && st.state != "Z"
}

// SessionCPU returns the user+sys CPU time the processes of session sid
// have used so far: every process of the session, zombies included, plus
// what the session leader's exited children used. A child that exits
// between two calls moves from its own count to its parent's reaped count,
// so the difference of two calls is what the session used between them
// (a child reaped by another child of the session, rather than by the
// leader, would be counted only while alive).
func SessionCPU(sid int) time.Duration {
	var sum time.Duration
	for _, pid := range pids() {
		st, ok := procStat(pid)
		if !ok || st.session != sid {
			continue
		}
		own, reaped, ok := ProcCPU(pid)
		if !ok {
			continue
		}
		sum += own
		if pid == sid {
			sum += reaped
		}
	}
	return sum
}

// SessionPIDs lists the live (not zombie) processes whose session id is
// sid.
func SessionPIDs(sid int) []int {
	var live []int
	for _, pid := range pids() {
		if st, ok := procStat(pid); ok && st.state != "Z" && st.session == sid {
			live = append(live, pid)
		}
	}
	return live
}

// pids lists every process id in /proc, zombies included.
func pids() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var ids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			ids = append(ids, pid)
		}
	}
	return ids
}

type procStatus struct {
	state   string
	session int
}

// procStat reads /proc/PID/stat.
func procStat(pid int) (procStatus, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStatus{}, false
	}
	// pid (comm) state ppid pgrp session ...; comm may hold spaces and ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStatus{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 4 {
		return procStatus{}, false
	}
	sid, err := strconv.Atoi(f[3])
	if err != nil {
		return procStatus{}, false
	}
	return procStatus{state: f[0], session: sid}, true
}
