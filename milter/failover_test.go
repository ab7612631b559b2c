package milter

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// A Redis master failing over mid-storm: storms run one after another
// through 4 nodes while the master serving the storming thread is
// SIGKILLed and its replica promoted, on a Sentinel group and on a
// 3-master Cluster with one replica each. Counting goes on on the
// promoted replica; the replies admitted beyond max_replies in the storms
// the failover overlaps are measured (see docs/redis.md, "Failover", for
// the bound).

// failoverShape is a Redis whose master can fail over.
type failoverShape struct {
	rc store.RedisConfig
	// serving is the master of thread th's keys and its replica.
	serving func(t *testing.T, th policy.ThreadID) (master, replica *redisenv.Server)
	// promoted waits until a master other than old serves th's keys and
	// returns it.
	promoted func(t *testing.T, old *redisenv.Server, th policy.ThreadID) *redisenv.Server
	// serves tells the keys master serves (nil: all of them).
	serves func(t *testing.T, master *redisenv.Server) func(key string) bool
	// rejoin restarts old, the killed master, and waits until it is a
	// replica of promoted that takes its writes.
	rejoin func(t *testing.T, old, promoted *redisenv.Server)
}

// sentinelShape is a master, its replica and one sentinel (down-after 1s).
func sentinelShape(t *testing.T) failoverShape {
	g := redisenv.StartSentinel(t, 1)
	return failoverShape{
		rc: store.RedisConfig{Addrs: g.SentinelAddrs(), MasterName: g.Name, Timeout: outageTimeout},
		serving: func(*testing.T, policy.ThreadID) (*redisenv.Server, *redisenv.Server) {
			return g.Master, g.Replica
		},
		promoted: func(t *testing.T, old *redisenv.Server, _ policy.ThreadID) *redisenv.Server {
			addr := g.WaitFailover(t, old.Addr, 30*time.Second)
			for _, s := range []*redisenv.Server{g.Master, g.Replica} {
				if s.Addr == addr {
					return s
				}
			}
			t.Fatalf("the sentinels promoted %s, neither master nor replica", addr)
			return nil
		},
		serves: func(*testing.T, *redisenv.Server) func(string) bool { return nil },
		rejoin: func(t *testing.T, old, promoted *redisenv.Server) {
			// Restarted as a replica, as an operator would: the sentinel
			// would turn it into one too, but only at its next INFO of it
			// (every 10s).
			old.Restart(t)
			host, port, _ := net.SplitHostPort(promoted.Addr)
			redisenv.CLI(t, old.Addr, "REPLICAOF", host, port)
			testenv.WaitFor(t, 30*time.Second, old.Addr+" a replica", func() (bool, string) {
				info, err := redisenv.CLIErr(old.Addr, "INFO", "replication")
				return err == nil && strings.Contains(info, "master_link_status:up"), info
			})
			redisenv.WaitStreaming(t, promoted.Addr, old.Addr)
		},
	}
}

// clusterShape is 3 masters with a replica each (node timeout 1s).
func clusterShape(t *testing.T) failoverShape {
	c := redisenv.StartClusterReplicas(t, 3)
	key := func(th policy.ThreadID) string { return store.NewKeys("").Meta(th) }
	return failoverShape{
		rc: store.RedisConfig{Addrs: c.Seeds(), Cluster: true, Timeout: outageTimeout},
		serving: func(t *testing.T, th policy.ThreadID) (*redisenv.Server, *redisenv.Server) {
			m := c.MasterOf(t, key(th))
			return m, c.ReplicaOf(t, m)
		},
		promoted: func(t *testing.T, old *redisenv.Server, th policy.ThreadID) *redisenv.Server {
			return c.WaitPromoted(t, old, key(th), 30*time.Second)
		},
		serves: func(t *testing.T, m *redisenv.Server) func(string) bool { return c.ServedBy(t, m) },
		rejoin: func(t *testing.T, old, promoted *redisenv.Server) {
			old.Restart(t) // it keeps its nodes.conf: it rejoins as its successor's replica
			c.WaitReplicaOf(t, promoted, old, 30*time.Second)
		},
	}
}

// failoverVariants are the nodes' store settings each failover runs under.
var failoverVariants = []struct {
	name  string
	tweak func(*store.RedisConfig)
}{
	{"async", func(*store.RedisConfig) {}},
	{"wait1", func(c *store.RedisConfig) { c.WaitReplicas, c.WaitTimeout = 1, 100*time.Millisecond }},
}

// TestFailoverUnderLoad runs each shape's failover two ways: "kill", the
// master SIGKILLed with its replica in sync; "lag", the replica cut off
// (redisenv.CutReplica) for lagFor while the storms go on, then the master
// SIGKILLed and the replica, thawed, promoted without the replies the
// master acknowledged in that time. Each runs under on_error accept and
// tempfail, and with each of failoverVariants. Once the promoted replica
// takes the nodes' records, the dead master is restarted as its replica
// and the storms go on; then every thread gets more replies, and a count
// Redis lost (or never had: the fallback's) shows as replies admitted
// again.
func TestFailoverUnderLoad(t *testing.T) {
	shapes := []struct {
		name  string
		start func(*testing.T) failoverShape
	}{{"sentinel", sentinelShape}, {"cluster", clusterShape}}
	for _, sh := range shapes {
		for _, scenario := range []string{"kill", "lag"} {
			for _, onError := range []string{OnErrorAccept, OnErrorTempfail} {
				for _, v := range failoverVariants {
					t.Run(sh.name+"/"+scenario+"/"+onError+"/"+v.name, func(t *testing.T) {
						testFailover(t, sh.name, sh.start(t), scenario == "lag", onError, v.name, v.tweak)
					})
				}
			}
		}
	}
}

const lagFor = 400 * time.Millisecond // how long the replica lags behind in "lag"

func testFailover(t *testing.T, shape string, sh failoverShape, lag bool, onError, variant string, tweak func(*store.RedisConfig)) {
	const (
		maxReplies = 10
		perStorm   = 64 // reply-alls per thread: 16 per node, more than max_replies
		followUp   = 16 // replies per thread once the failover is over: 4 per node
	)
	cfg := outageConfig(onError)
	cfg.Policy.Limits.MaxReplies = maxReplies
	rc := sh.rc
	tweak(&rc)
	ns := startNodes(t, nodes, cfg, rc)

	// Message i is reply i%perStorm of storm i/perStorm.
	run := uniq()
	root := func(s int) string { return fmt.Sprintf("storm-%d-%s@example.org", s, run) }
	thread := func(s int) policy.ThreadID { return policy.MessageIDKey(root(s)).Thread() }
	mails := func(i int) mail {
		m := replyAll(i, root((i-1)/perStorm))
		m.headers[3] = [2]string{"Message-ID", fmt.Sprintf(" <r-%d-%s@example.org>", i, uniq())}
		return m
	}
	probe, _ := sh.serving(t, thread(0))
	usesRedis(t, ns, probe.Addr, sh.serves(t, probe), 10*time.Second) // warm: every node has found the masters
	l := startLoad(ns, outageWorkers, mails)
	l.waitSent(t, 4*perStorm)

	// The master of the thread storming now.
	th := thread((int(l.n.Load()) - 1) / perStorm)
	master, replica := sh.serving(t, th)
	cutAt := time.Now()
	var unreplicated int64 // bytes of writes the master acknowledged after the cut
	if lag {
		redisenv.CutReplica(t, master, replica)
		cutAt = time.Now()
		from := redisenv.ReplOffset(t, master)
		poll(t, 10*time.Second, "the replica lagging", func() bool { return time.Since(cutAt) >= lagFor })
		unreplicated = redisenv.ReplOffset(t, master) - from
	}
	killAt := time.Now()
	master.Kill(t)
	if lag {
		replica.Cont(t)
	}
	promoted := sh.promoted(t, master, th)
	promotedAt := time.Now()
	if promoted != replica {
		t.Errorf("promoted %s, want the replica %s", promoted.Addr, replica.Addr)
	}
	// Counting continues on the promoted replica, from every node.
	resumed := usesRedis(t, ns, promoted.Addr, sh.serves(t, promoted), 10*time.Second)
	// The dead master comes back as the replica: records wait for it
	// again (WaitReplicas).
	sh.rejoin(t, master, promoted)
	healedAt := time.Now()
	l.waitSent(t, 4*perStorm)
	msgs := l.finish()

	var took []time.Duration
	for i, m := range msgs {
		if m.err != nil {
			t.Fatalf("message %d: %v", i, m.err)
		}
		took = append(took, m.took)
		if m.took > outageBudget+outageMargin {
			t.Errorf("message %d took %v to decide, more than store.budget %v + %v", i, m.took, outageBudget, outageMargin)
		}
	}
	slices.Sort(took)
	pct := func(p int) time.Duration { return took[(len(took)-1)*p/100].Round(100 * time.Microsecond) }

	// Per storm: replies admitted, and when the storm ran.
	type stormStat struct {
		admitted, answers int
		later             int // admitted of followUp more replies after the failover
		first, last       time.Time
	}
	byStorm := map[int]*stormStat{}
	for _, m := range msgs {
		s := (m.i - 1) / perStorm
		st := byStorm[s]
		if st == nil {
			st = &stormStat{first: m.start, last: m.end}
			byStorm[s] = st
		}
		st.answers++
		if m.code == 250 {
			st.admitted++
		}
		if m.start.Before(st.first) {
			st.first = m.start
		}
		if m.end.After(st.last) {
			st.last = m.end
		}
	}
	// Every thread goes on getting replies after the failover: a count
	// Redis lost (or never had: the fallback's) shows as replies admitted
	// again.
	for s, st := range byStorm {
		if st.answers < perStorm {
			continue
		}
		var more []mail
		for k := range followUp {
			m := replyAll(100000+k, root(s))
			m.headers[3] = [2]string{"Message-ID", fmt.Sprintf(" <later-%d-%d-%s@example.org>", s, k, uniq())}
			more = append(more, m)
		}
		for k, o := range fire(ns, more, 5*time.Second) {
			if o.err != nil {
				t.Fatalf("storm %d, reply %d after the failover: %v", s, k, o.err)
			}
			if o.code == 250 {
				st.later++
			}
		}
	}

	var overshoot, later, worstStorm, overlapping int
	var after []string
	for s, st := range byStorm {
		if st.answers < perStorm {
			continue // the last, unfinished storm
		}
		over := max(0, st.admitted+st.later-maxReplies)
		switch {
		case st.last.Before(cutAt), st.first.After(healedAt):
			if st.admitted != maxReplies || st.later != 0 {
				t.Errorf("storm %d, away from the failover: %d admitted, %d more after it, want %d and 0",
					s, st.admitted, st.later, maxReplies)
			}
			if st.first.After(healedAt) {
				after = append(after, fmt.Sprint(st.admitted))
			}
		default:
			overlapping++
			overshoot += over
			later += st.later
			worstStorm = max(worstStorm, over)
		}
	}
	// The bound: while a node cannot reach Redis it counts its share of
	// each thread (policy.OutageLimits: max_replies / nodes of a thread it
	// had no answer for, less for one it had), so the nodes together
	// admit at most nodes x that share beyond what Redis counts; writes
	// the dead master acknowledged but never replicated add at most the
	// replies it admitted for the thread, max_replies.
	if bound := nodes*max(1, maxReplies/nodes) + maxReplies; worstStorm > bound {
		t.Errorf("one storm overshot by %d, more than the nodes' shares and a lost window, %d", worstStorm, bound)
	}
	if len(after) == 0 {
		t.Error("no whole storm ran after the failover")
	}
	var fallbacks, storeErrs uint64
	for _, n := range ns {
		fallbacks += n.f.Stats.Fallbacks.Load()
		storeErrs += n.f.Stats.StoreErrors.Load()
	}
	how := "kill"
	if lag {
		how = fmt.Sprintf("lag (replica cut off %v before the kill: %d bytes of writes it never got)",
			killAt.Sub(cutAt).Round(time.Millisecond), unreplicated)
	}
	t.Logf("%s %s, on_error=%s, %s: %d messages; failover took %v (kill to promotion), Redis written again %v after, the old master its replica %v after; "+
		"%d storms overlapped it: %d replies admitted beyond max_replies=%d in all (%d of them after the failover), "+
		"at most %d in one storm; decision p50 %v, p99 %v, worst %v; store errors %d, fallbacks %d; "+
		"storms after the failover admitted %s",
		shape, how, onError, variant, len(msgs), promotedAt.Sub(killAt).Round(time.Millisecond), resumed.Round(time.Millisecond),
		healedAt.Sub(promotedAt).Round(time.Millisecond),
		overlapping, overshoot, maxReplies, later, worstStorm, pct(50), pct(99), took[len(took)-1].Round(time.Millisecond),
		storeErrs, fallbacks, strings.Join(after, ","))
}
