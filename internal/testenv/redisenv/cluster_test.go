package redisenv

import (
	"strings"
	"testing"
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
