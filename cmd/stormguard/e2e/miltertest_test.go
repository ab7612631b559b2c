package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
)

// The tests here drive `stormguard serve` with OpenDKIM's miltertest
// (Debian package miltertest), a milter client nobody here wrote, through
// the Lua scripts in testdata/miltertest. miltertest talks to the daemon
// over TCP as an MTA does; the scripts check stormguard's answer at end
// of headers, and the tests check miltertest's exit status and output and
// the daemon's decision log lines (miltertest shows only the milter reply
// code, not the SMTP code of a custom reply: whether a refusal was a 550
// is read from the log's action=reject).

const miltertestHint = "install Debian's miltertest (apt-get install miltertest)"

// miltertestMembers is the size of the list the storms go to: large enough
// to count (policy.min_audience, 2,500), small enough that eleven replies
// stay under the delivery budget (11 × 25,000 = 275,000 < 1,000,000), so
// the refusal is max_replies', the rule these tests are about.
const miltertestMembers = 25000

// mtScript is one of the scripts in testdata/miltertest and the message
// id of the original its storm replies to.
type mtScript struct {
	file string
	root string
}

var (
	replyAllScript   = mtScript{"reply_all.lua", "storm-root@example.org"}
	mixedChainScript = mtScript{"mixed_chain.lua", "chain-root@example.org"}
)

// mtAnswer is one line a script prints per message: which message, and
// stormguard's answer to it at end of headers.
type mtAnswer struct {
	label string // "original", "reply 3 (iPhone Mail)"
	reply string // "accept", "replycode", ...
}

// mtRun is one miltertest run.
type mtRun struct {
	err     error  // nil when miltertest exited 0
	out     string // standard output and standard error
	answers []mtAnswer
	fail    string // the script's "FAIL: " line, if any
}

var mtAnswerLine = regexp.MustCompile(`^(original|reply \d+(?: \([^)]*\))?): ([a-z]+(?: \d+)?)$`)

// runMiltertest runs script against d's milter socket, with the script's
// parameters as miltertest -D defines.
func runMiltertest(t *testing.T, d *daemon, s mtScript) mtRun {
	t.Helper()
	bin := testenv.LookPath(t, "miltertest", miltertestHint)
	host, port, err := net.SplitHostPort(d.addr)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := filepath.Abs(filepath.Join("testdata", "miltertest"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"-D", "dir="+dir,
		"-D", "milter=inet:"+port+"@"+host, // Sendmail's PORT@HOST order
		"-D", "list="+staffList,
		"-D", "root="+s.root,
		"-s", filepath.Join(dir, s.file))
	out, err := cmd.CombinedOutput()
	r := mtRun{err: err, out: string(out)}
	for _, line := range strings.Split(r.out, "\n") {
		if m := mtAnswerLine.FindStringSubmatch(line); m != nil {
			r.answers = append(r.answers, mtAnswer{m[1], m[2]})
		} else if rest, ok := strings.CutPrefix(line, "FAIL: "); ok {
			r.fail = rest
		}
	}
	if err != nil && r.fail == "" {
		// Debian's miltertest prints no Lua error at all, and loses its
		// buffered output when it crashes; storm.lua's run() prints the
		// reason of a failure it catches.
		t.Logf("miltertest %s: %v and no FAIL line: the script did not load (a Lua syntax error, a wrong dir) "+
			"or miltertest crashed (a header over 1,024 bytes smashes its stack: exit status 134)", s.file, err)
	}
	return r
}

// count tells how many answers were reply.
func (r mtRun) count(reply string) int {
	n := 0
	for _, a := range r.answers {
		if a.reply == reply {
			n++
		}
	}
	return n
}

// miltertestDaemon starts stormguard with the storm list registered, on
// the memory store or on a fresh Redis, plus extra YAML.
func miltertestDaemon(t *testing.T, store, extra string) *daemon {
	t.Helper()
	testenv.LookPath(t, "miltertest", miltertestHint) // fail or skip before starting anything
	yaml := fmt.Sprintf("lists:\n  %s: %d\n", staffList, miltertestMembers)
	if store == "redis" {
		yaml += fmt.Sprintf("store:\n  backend: redis\nredis:\n  addrs: [%s]\n  timeout: 2s\n", redisenv.Start(t))
	}
	d := startDaemon(t, yaml+extra)
	d.log.wait(t, 0, "site settings loaded", "lists=1")
	return d
}

// checkStorm checks a script that must pass: miltertest exits 0, the
// original and the replies up to the default max_replies (10) were
// accepted and the 11th refused, as the script printed them; and the
// daemon counted them all in the original's thread and refused the 11th
// with a 550 (action reject) by the max_replies rule.
func checkStorm(t *testing.T, d *daemon, s mtScript) {
	t.Helper()
	const maxReplies = 10 // the default policy.max_replies
	start := time.Now()
	r := runMiltertest(t, d, s)
	took := time.Since(start)
	if r.err != nil {
		t.Fatalf("miltertest %s: %v: %s\noutput:\n%s", s.file, r.err, r.fail, r.out)
	}
	if len(r.answers) != maxReplies+2 || r.count("accept") != maxReplies+1 || r.count("replycode") != 1 ||
		r.answers[len(r.answers)-1].reply != "replycode" {
		t.Fatalf("miltertest %s: want the original and %d replies accepted, then one refused; output:\n%s", s.file, maxReplies, r.out)
	}
	t.Logf("miltertest %s: %d messages in %v: %d accepted (the original and %d replies), %d refused (reply %d)",
		s.file, len(r.answers), took.Round(time.Millisecond), r.count("accept"), r.count("accept")-1, r.count("replycode"), maxReplies+1)

	thread := "thread=" + string(threadOf(s.root))
	d.log.wait(t, 0, "msg=decision", "sender="+boss, "action=accept", "rule=original", thread)
	for i := 1; i <= maxReplies; i++ {
		d.log.wait(t, 0, "msg=decision", fmt.Sprintf("sender=user%d@example.org", i), "action=accept", "rule=counted",
			fmt.Sprintf("count=%d", i), thread)
	}
	d.log.wait(t, 0, "msg=decision", fmt.Sprintf("sender=user%d@example.org", maxReplies+1), "action=reject", "rule=max_replies", thread)
}

// TestMiltertestReplyAllStorm: miltertest sends an original to a
// 25,000-member list and 11 reply-alls naming the root in References and
// In-Reply-To; the first 10 are accepted, the 11th refused.
func TestMiltertestReplyAllStorm(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			checkStorm(t, miltertestDaemon(t, store, ""), replyAllScript)
		})
	}
}

// TestMiltertestMixedClientChain: the same storm written as a chain, each
// reply answering the previous one the way Gmail, Thunderbird, iPhone
// Mail, RainLoop, Outlook and a Mailman web form write their threading
// headers; it is one thread, and the 11th reply is refused.
func TestMiltertestMixedClientChain(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			checkStorm(t, miltertestDaemon(t, store, ""), mixedChainScript)
		})
	}
}

// TestMiltertestReportsAMissedRefusal shows that the storm test can fail:
// against a daemon that allows 20 replies, the 11th reply-all is accepted,
// and the script must say so and make miltertest exit non-zero.
func TestMiltertestReportsAMissedRefusal(t *testing.T) {
	d := miltertestDaemon(t, "memory", "policy:\n  max_replies: 20\n")
	r := runMiltertest(t, d, replyAllScript)
	if r.err == nil {
		t.Fatalf("miltertest %s passed against max_replies 20; output:\n%s", replyAllScript.file, r.out)
	}
	var exit *exec.ExitError
	if !errors.As(r.err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("miltertest %s: %v, want exit status 1 (a failed script); output:\n%s", replyAllScript.file, r.err, r.out)
	}
	const want = "reply 11: stormguard answered accept at end of headers, want replycode"
	if r.fail != want {
		t.Fatalf("miltertest %s: FAIL line %q, want %q; output:\n%s", replyAllScript.file, r.fail, want, r.out)
	}
	if len(r.answers) != 12 || r.count("accept") != 12 {
		t.Fatalf("miltertest %s: want the original and 11 replies accepted before the failure; output:\n%s", replyAllScript.file, r.out)
	}
	d.log.wait(t, 0, "msg=decision", "sender=user11@example.org", "action=accept", "rule=counted", "count=11")
	t.Logf("against max_replies 20: %d accepted, miltertest exited %d with %q", r.count("accept"), exit.ExitCode(), r.fail)
}
