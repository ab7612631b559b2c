// Redis Sentinel for tests: a master, a replica and 1-3 sentinels.

package redisenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
)

// SentinelMaster is the master name StartSentinel monitors.
const SentinelMaster = "stormguard"

// Sentinel is a Sentinel group: a master, one replica and the sentinels
// watching them, with fast failover (down-after 1s).
type Sentinel struct {
	Master    *Server
	Replica   *Server
	Sentinels []*Server
	Name      string // the master name: SentinelMaster
}

// SentinelAddrs are the sentinels' addresses (redis.addrs with master_name).
func (g *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(g.Sentinels))
	for i, s := range g.Sentinels {
		addrs[i] = s.Addr
	}
	return addrs
}

// StartSentinel starts a master, a replica of it and n (1 to 3) sentinels
// monitoring the master under SentinelMaster with a quorum of n/2+1. It
// returns when the replica applies the master's writes and every
// sentinel sees the replica and the other sentinels, so a failover can
// start at once. args go to the master and the replica (e.g. an ACL
// user).
func StartSentinel(t testing.TB, n int, args ...string) *Sentinel {
	t.Helper()
	if n < 1 || n > 3 {
		t.Fatalf("redisenv: StartSentinel: %d sentinels, want 1 to 3", n)
	}
	bin := testenv.LookPath(t, "redis-server", installHint)
	// No 5s wait before the replica's first (diskless) sync.
	g := &Sentinel{Name: SentinelMaster, Master: StartServer(t, append([]string{"--repl-diskless-sync-delay", "0"}, args...)...)}
	_, mport, _ := net.SplitHostPort(g.Master.Addr)
	// The replica too: promoted, it syncs a new replica at once.
	g.Replica = StartServer(t, append([]string{"--replicaof", "127.0.0.1", mport, "--repl-diskless-sync-delay", "0"}, args...)...)
	testenv.WaitFor(t, 10*time.Second, "replica in sync", func() (bool, string) {
		info, err := CLIErr(g.Replica.Addr, "INFO", "replication")
		return err == nil && strings.Contains(info, "master_link_status:up"), info
	})
	WaitStreaming(t, g.Master.Addr, g.Replica.Addr)
	quorum := n/2 + 1
	for range n {
		s := startServer(t, bin, func(port int, dir string) []string {
			conf := filepath.Join(dir, "sentinel.conf") // sentinel rewrites it: its own dir
			text := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
sentinel monitor %s 127.0.0.1 %s %d
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 5000
sentinel parallel-syncs %s 1
`, port, dir, SentinelMaster, mport, quorum, SentinelMaster, SentinelMaster, SentinelMaster)
			if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
				t.Fatalf("redisenv: %v", err)
			}
			return []string{conf, "--sentinel"}
		}, nil)
		g.Sentinels = append(g.Sentinels, s)
	}
	for _, s := range g.Sentinels {
		testenv.WaitFor(t, 15*time.Second, "sentinel "+s.Addr+" sees the replica and its peers", func() (bool, string) {
			m, err := CLIErr(s.Addr, "SENTINEL", "MASTER", SentinelMaster)
			if err != nil {
				return false, err.Error()
			}
			f := fieldsOf(m)
			return f["num-slaves"] == "1" && f["num-other-sentinels"] == strconv.Itoa(n-1), m
		})
	}
	return g
}

// KillMaster SIGKILLs the current master; the sentinels promote the
// replica after down-after-milliseconds (1s) and an election.
func (g *Sentinel) KillMaster(t testing.TB) {
	t.Helper()
	g.Master.Kill(t)
}

// WaitFailover waits until every sentinel names a master other than old
// and that master answers as a master; it returns the new master's
// address.
func (g *Sentinel) WaitFailover(t testing.TB, old string, timeout time.Duration) string {
	t.Helper()
	var addr string
	testenv.WaitFor(t, timeout, "failover away from "+old, func() (bool, string) {
		addr = ""
		for _, s := range g.Sentinels {
			out, err := CLIErr(s.Addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster)
			f := strings.Fields(out)
			if err != nil || len(f) != 2 {
				return false, out
			}
			a := net.JoinHostPort(f[0], f[1])
			if a == old || addr != "" && a != addr {
				return false, a
			}
			addr = a
		}
		role, err := CLIErr(addr, "ROLE")
		return err == nil && strings.HasPrefix(role, "master"), role
	})
	return addr
}

// fieldsOf reads redis-cli's output of a flat name/value reply (one item
// a line) into a map.
func fieldsOf(out string) map[string]string {
	lines := strings.Split(out, "\n")
	m := make(map[string]string, len(lines)/2)
	for i := 0; i+1 < len(lines); i += 2 {
		m[strings.TrimSpace(lines[i])] = strings.TrimSpace(lines[i+1])
	}
	return m
}
