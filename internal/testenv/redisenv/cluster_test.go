package redisenv

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestStartRedisCluster(t *testing.T) {
	addrs := StartCluster(t)
	if len(addrs) != 3 {
		t.Fatalf("StartCluster = %q, want 3 nodes", addrs)
	}
	masters := 0
	for line := range strings.Lines(CLI(t, addrs[0], "CLUSTER", "NODES")) {
		if strings.Contains(line, "master") && !strings.Contains(line, "fail") {
			masters++
		}
	}
	if masters != 3 {
		t.Errorf("CLUSTER NODES lists %d healthy masters, want 3", masters)
	}
	// A key lands on its slot's node: -c follows the MOVED redirect.
	CLI(t, addrs[1], "-c", "SET", "stormguard:{x}:k", "v")
	if got := CLI(t, addrs[2], "-c", "GET", "stormguard:{x}:k"); got != "v" {
		t.Errorf("GET through another node = %q", got)
	}
}

func TestKeySlot(t *testing.T) {
	for key, want := range map[string]int{
		"123456789":            12739, // CRC16/XMODEM check value 0x31c3
		"foo":                  12182,
		"{user1000}.following": KeySlot("user1000"),
		"a{}b":                 KeySlot("a{}b"), // an empty tag is no tag
		"stormguard:{T}:meta":  KeySlot("T"),
	} {
		if got := KeySlot(key); got != want {
			t.Errorf("KeySlot(%q) = %d, want %d", key, got, want)
		}
	}
}

// A master SIGKILLed: its replica takes its slots, with what it had.
func TestClusterReplicasFailover(t *testing.T) {
	c := StartClusterReplicas(t, 3)
	if len(c.Nodes) != 6 {
		t.Fatalf("%d nodes, want 6", len(c.Nodes))
	}
	const key = "stormguard:{x}:k"
	if got := CLI(t, c.Nodes[0].Addr, "CLUSTER", "KEYSLOT", key); got != strconv.Itoa(KeySlot(key)) {
		t.Errorf("CLUSTER KEYSLOT = %s, KeySlot = %d", got, KeySlot(key))
	}
	m := c.MasterOf(t, key)
	r := c.ReplicaOf(t, m)
	CLI(t, c.Nodes[0].Addr, "-c", "SET", key, "v")
	WaitSynced(t, m, r)

	start := time.Now()
	m.Kill(t)
	p := c.WaitPromoted(t, m, key, 20*time.Second)
	t.Logf("failover to %s took %v", p.Addr, time.Since(start))
	if p != r {
		t.Errorf("promoted %s, want the replica %s", p.Addr, r.Addr)
	}
	if got := CLI(t, p.Addr, "GET", key); got != "v" {
		t.Errorf("GET on the promoted replica = %q", got)
	}
	if c.MasterOf(t, key) != p {
		t.Error("MasterOf does not name the promoted replica")
	}
	if !c.ServedBy(t, p)(key) || c.ServedBy(t, c.Nodes[0])(key) && c.Nodes[0] != p {
		t.Error("ServedBy: the key is not the promoted replica's alone")
	}
	m.Restart(t)
	c.WaitReplicaOf(t, p, m, 30*time.Second)
	if role := CLI(t, m.Addr, "ROLE"); !strings.HasPrefix(role, "slave") {
		t.Errorf("the old master, restarted: ROLE = %q, want a replica", role)
	}
}

// A replica cut off from its master is promoted when the master dies,
// without the writes the master acknowledged after the cut.
func TestClusterLaggingReplicaPromoted(t *testing.T) {
	c := StartClusterReplicas(t, 3)
	const before, after = "stormguard:{x}:before", "stormguard:{x}:after"
	m := c.MasterOf(t, before)
	r := c.ReplicaOf(t, m)
	CLI(t, m.Addr, "SET", before, "v")
	WaitSynced(t, m, r)
	CutReplica(t, m, r)
	CLI(t, m.Addr, "SET", after, "v")
	m.Kill(t)
	r.Cont(t)
	p := c.WaitPromoted(t, m, before, 20*time.Second)
	if p != r {
		t.Fatalf("promoted %s, want the replica %s", p.Addr, r.Addr)
	}
	if got := CLI(t, p.Addr, "EXISTS", before, after); got != "1" {
		t.Errorf("EXISTS before after = %s on the promoted replica, want 1 (before only)", got)
	}
}
