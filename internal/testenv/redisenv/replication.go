// Replication for tests: waiting until a replica takes the master's
// command stream or catches up, or cutting it off.

package redisenv

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
)

// WaitStreaming waits until the replica at replica applies the writes of
// the master at master: it writes a probe key on the master and waits for
// it on the replica. A replica that reports its link up and that the
// master lists as online may not have the command stream yet: after a
// diskless sync it starts with the replica's first ACK, up to a second
// later, and until then a WAIT on the master counts no replica.
func WaitStreaming(t testing.TB, master, replica string) {
	t.Helper()
	const key = "redisenv:probe"
	v := strconv.FormatInt(time.Now().UnixNano(), 10)
	CLI(t, master, "SET", key, v)
	testenv.WaitFor(t, 10*time.Second, "replica "+replica+" applies "+master+"'s writes", func() (bool, string) {
		got, err := CLIErr(replica, "GET", key)
		return err == nil && got == v, got
	})
	CLI(t, master, "DEL", key)
}

// WaitSynced waits until replica has every write master has made so far:
// its replication offset reaches the master's.
func WaitSynced(t testing.TB, master, replica *Server) {
	t.Helper()
	want := ReplOffset(t, master)
	testenv.WaitFor(t, 10*time.Second, "replica "+replica.Addr+" at offset "+strconv.FormatInt(want, 10), func() (bool, string) {
		info, err := CLIErr(replica.Addr, "INFO", "replication")
		if err != nil {
			return false, err.Error()
		}
		f := infoFields(info)
		got, _ := strconv.ParseInt(f["slave_repl_offset"], 10, 64)
		return f["master_link_status"] == "up" && got >= want, info
	})
}

// waitStreaming is WaitStreaming on a Cluster: key must be in a slot of
// master's, and the replica's offset, not a read (a Cluster replica
// redirects reads), shows that it applied the write.
func waitStreaming(t testing.TB, master, replica *Server, key string) {
	t.Helper()
	CLI(t, master.Addr, "SET", key, "1")
	CLI(t, master.Addr, "DEL", key)
	WaitSynced(t, master, replica)
}

// CutReplica makes replica lag: it freezes it (SIGSTOP) and has master
// drop its replication links (CLIENT KILL TYPE replica). The master goes on
// acknowledging writes that the replica never gets: promoted after the
// master dies, it has only what it had read before the cut. (A replica
// only frozen would still read them from its socket once thawed.) Cont
// thaws it.
func CutReplica(t testing.TB, master, replica *Server) {
	t.Helper()
	replica.Stop(t)
	CLI(t, master.Addr, "CLIENT", "KILL", "TYPE", "replica")
}

// ReplOffset is master's replication offset: the bytes of writes it has
// sent its replicas, or would have.
func ReplOffset(t testing.TB, master *Server) int64 {
	t.Helper()
	f := infoFields(CLI(t, master.Addr, "INFO", "replication"))
	n, err := strconv.ParseInt(f["master_repl_offset"], 10, 64)
	if err != nil {
		t.Fatalf("redisenv: INFO replication of %s: master_repl_offset = %q", master.Addr, f["master_repl_offset"])
	}
	return n
}

// infoFields reads an INFO reply's name:value lines into a map.
func infoFields(info string) map[string]string {
	m := map[string]string{}
	for line := range strings.Lines(info) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}
