package testenv

import (
	"net"
	"os"
	"testing"
)

// mtaKinds starts each private MTA, relaying to a sink.
var mtaKinds = []struct {
	name  string
	start func(t *testing.T) *MTA
}{
	{"postfix", func(t *testing.T) *MTA {
		return StartPostfix(t, PostfixOptions{RelayTo: StartSink(t).Addr}).MTA
	}},
	{"sendmail", func(t *testing.T) *MTA {
		return StartSendmail(t, SendmailOptions{RelayTo: StartSink(t).Addr}).MTA
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
				leader, dir = m.leader, m.Dir
				if n := len(sessionPIDs(leader)); n == 0 {
					t.Fatalf("no process in the session of %d", leader)
				}
			})
			if leader == 0 {
				t.Skip("instance did not start")
			}
			if left := sessionPIDs(leader); len(left) != 0 || processAlive(leader) {
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
	defer func() { mtaPort = FreePort }()
	for _, kind := range mtaKinds {
		t.Run(kind.name, func(t *testing.T) {
			calls := 0
			mtaPort = func(t testing.TB) int {
				calls++
				if calls == 1 {
					return takenPort
				}
				return FreePort(t)
			}
			m := kind.start(t)
			if calls != 2 || m.Port == takenPort {
				t.Fatalf("port %d after %d tries", m.Port, calls)
			}
			if r, err := Send(m.Addr, "a@example.com", []string{"b@example.org"}, []byte("Subject: x\r\n\r\nx\r\n")); err != nil || !r.OK() {
				t.Fatalf("%v %v", r, err)
			}
		})
	}
}
