// Replication for tests: waiting until a replica takes the master's
// command stream.

package redisenv

import (
	"strconv"
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
