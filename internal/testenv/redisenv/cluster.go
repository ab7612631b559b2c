// Redis Cluster for tests: n masters made into one cluster by the real
// redis-cli --cluster create.

package redisenv

import (
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
