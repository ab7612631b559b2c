// Redis Cluster for tests: n masters made into one cluster by the real
// redis-cli --cluster create.

package redisenv

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
)

// StartCluster starts a Redis Cluster of three masters (no replicas)
// that together serve every slot, waits until every node reports
// cluster_state:ok, and returns the nodes' addresses (any of them is a
// seed for redis.addrs with redis.cluster).
func StartCluster(t testing.TB, args ...string) []string {
	t.Helper()
	return StartClusterOf(t, 3, args...)
}

// StartClusterOf is StartCluster with n masters. One master
// takes every slot by CLUSTER ADDSLOTSRANGE (redis-cli refuses to create a
// cluster of fewer than three). args go to every node.
func StartClusterOf(t testing.TB, n int, args ...string) []string {
	t.Helper()
	if n < 1 {
		t.Fatalf("redisenv: StartClusterOf: %d masters", n)
	}
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = Start(t, append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"}, args...)...)
	}
	if n == 1 {
		CLI(t, addrs[0], "CLUSTER", "ADDSLOTSRANGE", "0", "16383")
	} else {
		CLI(t, addrs[0], append(append([]string{"--cluster", "create"}, addrs...),
			"--cluster-replicas", "0", "--cluster-yes")...)
	}
	for _, a := range addrs {
		testenv.WaitFor(t, 10*time.Second, "cluster node "+a+" ok", func() (bool, string) {
			info, err := CLIErr(a, "CLUSTER", "INFO")
			if err != nil {
				return false, err.Error()
			}
			have := map[string]bool{}
			for line := range strings.Lines(info) {
				have[strings.TrimSpace(line)] = true
			}
			return have["cluster_state:ok"] && have["cluster_slots_ok:16384"] &&
				have["cluster_known_nodes:"+strconv.Itoa(n)], info
		})
	}
	return addrs
}

// Cluster is a Redis Cluster of masters with one replica each, with fast
// failover: a master no node has heard from for cluster-node-timeout (1s)
// is failed, and its replica promoted.
type Cluster struct {
	Nodes []*Server // every node, in start order; the roles are in CLUSTER NODES
}

// Seeds are the nodes' addresses (redis.addrs with redis.cluster).
func (c *Cluster) Seeds() []string {
	addrs := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		addrs[i] = s.Addr
	}
	return addrs
}

// StartClusterReplicas starts a Redis Cluster of masters masters (at least
// three) and one replica of each, made by the real redis-cli --cluster
// create --cluster-replicas 1, with cluster-node-timeout 1000. It returns
// when every node reports cluster_state:ok and sees every node without a
// failure flag, and every master's writes reach its replica. args go to
// every node.
func StartClusterReplicas(t testing.TB, masters int, args ...string) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("redisenv: StartClusterReplicas: %d masters, want at least 3", masters)
	}
	c := &Cluster{}
	for range 2 * masters {
		c.Nodes = append(c.Nodes, StartServer(t, append([]string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000",
			"--repl-diskless-sync-delay", "0", // no 5s wait before a replica's first sync
		}, args...)...))
	}
	CLI(t, c.Nodes[0].Addr, append(append([]string{"--cluster", "create"}, c.Seeds()...),
		"--cluster-replicas", "1", "--cluster-yes")...)
	for _, s := range c.Nodes {
		testenv.WaitFor(t, 15*time.Second, "cluster node "+s.Addr+" ok", func() (bool, string) {
			info, err := CLIErr(s.Addr, "CLUSTER", "INFO")
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				return false, info
			}
			view, err := clusterNodes(s.Addr)
			if err != nil {
				return false, err.Error()
			}
			var ms, rs int
			for _, n := range view {
				switch {
				case n.flags["fail"] || n.flags["fail?"] || n.flags["handshake"] || n.flags["noaddr"]:
					return false, n.line
				case n.flags["master"] && len(n.slots) > 0:
					ms++
				case n.flags["slave"] && n.master != "-":
					rs++
				}
			}
			return ms == masters && rs == masters, fmt.Sprintf("%d masters, %d replicas", ms, rs)
		})
	}
	for _, n := range c.view(t) {
		if n.flags["master"] {
			m := c.server(t, n.addr)
			waitStreaming(t, m, c.ReplicaOf(t, m), keyIn(n.slots[0][0]))
		}
	}
	return c
}

// MasterOf is the master that serves key's slot, as the first node that
// answers sees it.
func (c *Cluster) MasterOf(t testing.TB, key string) *Server {
	t.Helper()
	slot := KeySlot(key)
	for _, n := range c.view(t) {
		if n.flags["master"] && n.serves(slot) {
			return c.server(t, n.addr)
		}
	}
	t.Fatalf("redisenv: no master serves slot %d", slot)
	return nil
}

// ReplicaOf is master's replica.
func (c *Cluster) ReplicaOf(t testing.TB, master *Server) *Server {
	t.Helper()
	view := c.view(t)
	var id string
	for _, n := range view {
		if n.addr == master.Addr {
			id = n.id
		}
	}
	for _, n := range view {
		if id != "" && n.flags["slave"] && n.master == id {
			return c.server(t, n.addr)
		}
	}
	t.Fatalf("redisenv: %s has no replica", master.Addr)
	return nil
}

// WaitPromoted waits until every node still running but old reports
// cluster_state:ok and names the same master other than old for key's
// slot, and that master answers ROLE as one; it returns that master.
func (c *Cluster) WaitPromoted(t testing.TB, old *Server, key string, timeout time.Duration) *Server {
	t.Helper()
	slot := KeySlot(key)
	var addr string
	testenv.WaitFor(t, timeout, fmt.Sprintf("slot %d served by a master other than %s", slot, old.Addr), func() (bool, string) {
		addr = ""
		for _, s := range c.Nodes {
			if s == old || s.gone() {
				continue
			}
			info, err := cliWithin(time.Second, s.Addr, "CLUSTER", "INFO")
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				return false, s.Addr + ": " + info
			}
			view, err := clusterNodes(s.Addr)
			if err != nil {
				return false, err.Error()
			}
			var m string
			for _, n := range view {
				if n.flags["master"] && !n.flags["fail"] && !n.flags["fail?"] && n.serves(slot) {
					m = n.addr
				}
			}
			if m == "" || m == old.Addr || addr != "" && m != addr {
				return false, s.Addr + " names " + m
			}
			addr = m
		}
		role, err := cliWithin(time.Second, addr, "ROLE")
		return err == nil && strings.HasPrefix(role, "master"), role
	})
	return c.server(t, addr)
}

// view is CLUSTER NODES of the first running node that answers.
func (c *Cluster) view(t testing.TB) []clusterNode {
	t.Helper()
	var errs []string
	for _, s := range c.Nodes {
		if s.gone() {
			continue
		}
		view, err := clusterNodes(s.Addr)
		if err == nil {
			return view
		}
		errs = append(errs, err.Error())
	}
	t.Fatalf("redisenv: no cluster node answers CLUSTER NODES: %s", strings.Join(errs, "; "))
	return nil
}

func (c *Cluster) server(t testing.TB, addr string) *Server {
	t.Helper()
	for _, s := range c.Nodes {
		if s.Addr == addr {
			return s
		}
	}
	t.Fatalf("redisenv: %s is not a node of the cluster", addr)
	return nil
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	line   string
	id     string
	addr   string          // host:port, without the bus port
	flags  map[string]bool // myself, master, slave, fail?, fail, handshake, noaddr, ...
	master string          // a replica's master id; "-" for a master
	slots  [][2]int        // ranges served, inclusive
}

func (n clusterNode) serves(slot int) bool {
	for _, r := range n.slots {
		if r[0] <= slot && slot <= r[1] {
			return true
		}
	}
	return false
}

// clusterNodes reads CLUSTER NODES of the node at addr (waiting at most a
// second: the node may be frozen).
func clusterNodes(addr string) ([]clusterNode, error) {
	out, err := cliWithin(time.Second, addr, "CLUSTER", "NODES")
	if err != nil {
		return nil, err
	}
	var view []clusterNode
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("CLUSTER NODES of %s: line %q", addr, line)
		}
		a, _, _ := strings.Cut(f[1], "@")
		n := clusterNode{line: strings.TrimSpace(line), id: f[0], addr: a, flags: map[string]bool{}, master: f[3]}
		for fl := range strings.SplitSeq(f[2], ",") {
			n.flags[fl] = true
		}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") { // a slot being migrated
				continue
			}
			lo, hi, isRange := strings.Cut(s, "-")
			if !isRange {
				hi = lo
			}
			l, err1 := strconv.Atoi(lo)
			h, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("CLUSTER NODES of %s: slots %q", addr, s)
			}
			n.slots = append(n.slots, [2]int{l, h})
		}
		view = append(view, n)
	}
	return view, nil
}

// KeySlot is the Cluster slot of key: CRC16 (XMODEM) of its hash tag, or
// of the whole key when it has none, modulo 16384.
func KeySlot(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := range len(key) {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc % 16384)
}

// keyIn is a key in slot.
func keyIn(slot int) string {
	for i := 0; ; i++ {
		if k := "redisenv:{" + strconv.Itoa(i) + "}"; KeySlot(k) == slot {
			return k
		}
	}
}

// ServedBy reads which slots s serves, as the first node that answers
// sees it, and returns whether a key lies in them.
func (c *Cluster) ServedBy(t testing.TB, s *Server) func(key string) bool {
	t.Helper()
	var mine clusterNode
	for _, n := range c.view(t) {
		if n.addr == s.Addr {
			mine = n
		}
	}
	return func(key string) bool { return mine.serves(KeySlot(key)) }
}

// WaitReplicaOf waits until every running node lists replica as a replica
// of master and master's writes reach it: e.g. a master killed, failed
// over and restarted (Server.Restart: it keeps its nodes.conf) that has
// rejoined as the replica of its successor.
func (c *Cluster) WaitReplicaOf(t testing.TB, master, replica *Server, timeout time.Duration) {
	t.Helper()
	testenv.WaitFor(t, timeout, replica.Addr+" a replica of "+master.Addr, func() (bool, string) {
		for _, s := range c.Nodes {
			if s.gone() {
				continue
			}
			view, err := clusterNodes(s.Addr)
			if err != nil {
				return false, err.Error()
			}
			var id, of string
			for _, n := range view {
				if n.addr == master.Addr {
					id = n.id
				}
				if n.addr == replica.Addr && n.flags["slave"] && !n.flags["fail"] && !n.flags["fail?"] {
					of = n.master
				}
			}
			if id == "" || of != id {
				return false, s.Addr + " sees " + replica.Addr + " replicating " + of
			}
		}
		return true, ""
	})
	var slot int
	for _, n := range c.view(t) {
		if n.addr == master.Addr && len(n.slots) > 0 {
			slot = n.slots[0][0]
		}
	}
	waitStreaming(t, master, replica, keyIn(slot))
}
