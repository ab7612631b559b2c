package redisenv

import (
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
)

func TestRedisServerKillStopRestart(t *testing.T) {
	s := StartServer(t)
	CLI(t, s.Addr, "SET", "k", "v")
	pid := s.Pid()

	s.Stop(t)
	if _, err := cliWithin(300*time.Millisecond, s.Addr, "PING"); err == nil {
		t.Error("a stopped server answered PING")
	}
	s.Cont(t)
	if got := CLI(t, s.Addr, "GET", "k"); got != "v" {
		t.Errorf("after SIGCONT: GET = %q", got)
	}

	s.Kill(t)
	if _, err := CLIErr(s.Addr, "PING"); err == nil {
		t.Fatal("a killed server answered PING")
	}
	s.Restart(t)
	if s.Pid() == pid {
		t.Error("Restart kept the old process")
	}
	if got := CLI(t, s.Addr, "EXISTS", "k"); got != "0" {
		t.Errorf("restarted server is not empty: EXISTS = %s", got)
	}
}

func TestStartSentinelFailover(t *testing.T) {
	g := StartSentinel(t, 1)
	out := CLI(t, g.Sentinels[0].Addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster)
	if got := strings.Join(strings.Fields(out), ":"); got != g.Master.Addr {
		t.Fatalf("sentinel names master %q, want %s", got, g.Master.Addr)
	}
	CLI(t, g.Master.Addr, "SET", "k", "v")
	testenv.WaitFor(t, 5*time.Second, "the write replicated", func() (bool, string) {
		got, err := CLIErr(g.Replica.Addr, "GET", "k")
		return err == nil && got == "v", got
	})
	start := time.Now()
	g.KillMaster(t)
	addr := g.WaitFailover(t, g.Master.Addr, 20*time.Second)
	t.Logf("failover to %s took %v", addr, time.Since(start))
	if addr != g.Replica.Addr {
		t.Errorf("new master %s, want the replica %s", addr, g.Replica.Addr)
	}
	if got := CLI(t, addr, "GET", "k"); got != "v" {
		t.Errorf("GET on the promoted replica = %q", got)
	}
}

// A replica cut off from its master is promoted when the master dies,
// without the writes the master acknowledged after the cut.
func TestSentinelLaggingReplicaPromoted(t *testing.T) {
	g := StartSentinel(t, 1)
	CLI(t, g.Master.Addr, "SET", "before", "v")
	WaitSynced(t, g.Master, g.Replica)
	CutReplica(t, g.Master, g.Replica)
	CLI(t, g.Master.Addr, "SET", "after", "v")
	g.KillMaster(t)
	g.Replica.Cont(t)
	addr := g.WaitFailover(t, g.Master.Addr, 20*time.Second)
	if addr != g.Replica.Addr {
		t.Fatalf("new master %s, want the replica %s", addr, g.Replica.Addr)
	}
	if got := CLI(t, addr, "EXISTS", "before", "after"); got != "1" {
		t.Errorf("EXISTS before after = %s on the promoted replica, want 1 (before only)", got)
	}
}
