package mtaenv_test

import (
	"net"
	"os"
	"testing"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/mtaenv"
	"github.com/stormguard/stormguard/internal/testenv/postfixenv"
	"github.com/stormguard/stormguard/internal/testenv/sendmailenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
)

// mtaKinds starts each private MTA, relaying to a sink.
var mtaKinds = []struct {
	name  string
	start func(t *testing.T) *mtaenv.Instance
}{
	{"postfix", func(t *testing.T) *mtaenv.Instance {
		return postfixenv.Start(t, postfixenv.Options{RelayTo: smtpenv.StartSink(t).Addr}).Instance
	}},
	{"sendmail", func(t *testing.T) *mtaenv.Instance {
		return sendmailenv.Start(t, sendmailenv.Options{RelayTo: smtpenv.StartSink(t).Addr}).Instance
	}},
}

// When the test that started it ends, no process of the instance is left
// and its directory is gone.
func TestMTACleanupLeavesNothing(t *testing.T) {
	for _, kind := range mtaKinds {
		t.Run(kind.name, func(t *testing.T) {
			var leader int
			var dir string
			t.Run("instance", func(t *testing.T) {
				m := kind.start(t)
				leader, dir = m.Leader(), m.Dir
				if n := len(testenv.SessionPIDs(leader)); n == 0 {
					t.Fatalf("no process in the session of %d", leader)
				}
			})
			if leader == 0 {
				t.Skip("instance did not start")
			}
			if left := testenv.SessionPIDs(leader); len(left) != 0 || testenv.ProcessAlive(leader) {
				t.Errorf("processes of %d survive: %v", leader, left)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("%s not removed: %v", dir, err)
			}
		})
	}
}

// An MTA survives its free port being taken before it binds it.
func TestMTAPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	for _, kind := range mtaKinds {
		t.Run(kind.name, func(t *testing.T) {
			calls := 0
			mtaenv.SetPort(t, func(t testing.TB) int {
				calls++
				if calls == 1 {
					return takenPort
				}
				return testenv.FreePort(t)
			})
			m := kind.start(t)
			if calls != 2 || m.Port == takenPort {
				t.Fatalf("port %d after %d tries", m.Port, calls)
			}
			if r, err := smtpenv.Send(m.Addr, "a@example.com", []string{"b@example.org"}, []byte("Subject: x\r\n\r\nx\r\n")); err != nil || !r.OK() {
				t.Fatalf("%v %v", r, err)
			}
		})
	}
}
