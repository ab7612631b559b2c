package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/cmd/stormguard/internal/config"
	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/internal/text"
	"github.com/stormguard/stormguard/mtaqueue"
	"github.com/stormguard/stormguard/policy"
)

// mtaTimeout bounds the MTA's tools in one queue command: postsuper on a
// thousand ids, or Sendmail once per id.
const mtaTimeout = 2 * time.Minute

// queueFlags are the queue command's flags.
type queueFlags struct {
	delete, release, hold, asJSON bool
	node                          string
	mta                           string
	postfixConfig                 string
	sendmailCF, sendmailQueue     string
	sendmailBin                   string
}

// action is the one action asked for, "" for the listing.
func (f *queueFlags) action() (mtaqueue.Action, error) {
	var as []mtaqueue.Action
	for a, on := range map[mtaqueue.Action]bool{mtaqueue.Delete: f.delete, mtaqueue.Release: f.release, mtaqueue.Hold: f.hold} {
		if on {
			as = append(as, a)
		}
	}
	switch len(as) {
	case 0:
		return "", nil
	case 1:
		return as[0], nil
	}
	return "", errors.New("--delete, --release and --hold exclude each other")
}

// queueResult is what --json prints.
type queueResult struct {
	Thread string             `json:"thread"`
	Queued []history.QueueRef `json:"queued"`
	// With an action: this node, what was done with each of its ids,
	// and the other nodes' ids, which must be cleared there.
	Node      string              `json:"node,omitempty"`
	Action    string              `json:"action,omitempty"`
	Results   []mtaqueue.Result   `json:"results,omitempty"`
	Elsewhere map[string][]string `json:"elsewhere,omitempty"`
}

func newQueueCmd(stdout io.Writer) *cobra.Command {
	var f queueFlags
	cmd := &cobra.Command{
		Use:   "queue THREAD",
		Short: "List the MTA queue ids of a thread's original and accepted replies, per node; on a node, delete, hold or release those still queued there",
		Long: `queue lists the queue ids stored for a thread: its original and the replies
each node let through (or held), with the node's name.

With --delete, --hold or --release it acts on this node's ids (those whose
node is --node, by default the node name of the config) that are still in
this node's MTA queue, with the MTA's own tool (Postfix: postsuper -d, -h,
-H; Sendmail: quarantine and its queue directory), and prints per id what
it did and what was already gone. Other nodes' ids are listed with the node
to run the same command on. Acting on the queue needs root.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := admin.ParseThread(args[0])
			if err != nil {
				return err
			}
			act, err := f.action()
			if err != nil {
				return err
			}
			a, ctx, done, err := openAdmin(cmd, stdout)
			if err != nil {
				return err
			}
			defer done()
			refs, err := a.api.Queued(ctx, t)
			if err != nil {
				return err
			}
			return f.run(cmd.Context(), stdout, t, act, refs, a.cfg)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.delete, "delete", false, "delete this node's ids that are still queued (Postfix: postsuper -d)")
	fl.BoolVar(&f.hold, "hold", false, "put this node's ids that are still queued on hold (Postfix: postsuper -h; Sendmail: quarantine)")
	fl.BoolVar(&f.release, "release", false, "release this node's held ids (Postfix: postsuper -H; Sendmail: unquarantine)")
	fl.StringVar(&f.node, "node", "", "this node's name, as the daemon records it (default: the config key node, else the host name)")
	fl.StringVar(&f.mta, "mta", "postfix", "this node's MTA: postfix or sendmail")
	fl.StringVar(&f.postfixConfig, "postfix-config", "/etc/postfix", "Postfix's config_directory (postsuper -c)")
	fl.StringVar(&f.sendmailCF, "sendmail-cf", "/etc/mail/sendmail.cf", "Sendmail's sendmail.cf (sendmail -C)")
	fl.StringVar(&f.sendmailQueue, "sendmail-queue", "", "Sendmail's queue directory (default: QueueDirectory of --sendmail-cf)")
	fl.StringVar(&f.sendmailBin, "sendmail-bin", "", "the sendmail binary (default: sendmail in PATH, /usr/sbin or /usr/lib)")
	fl.BoolVar(&f.asJSON, "json", false, "print JSON")
	return cmd
}

// run prints refs or, with act, does act on this node's ids in refs and
// prints what it did.
func (f *queueFlags) run(ctx context.Context, stdout io.Writer, t policy.ThreadID, act mtaqueue.Action, refs []history.QueueRef, cfg *config.Config) error {
	out := queueResult{Thread: string(t), Queued: refs}
	if act == "" {
		if f.asJSON {
			return writeJSON(stdout, out)
		}
		return printQueued(stdout, t, refs)
	}
	mta, err := f.open(t)
	if err != nil {
		return err
	}
	out.Node, out.Action = f.thisNode(cfg), string(act)
	mine, elsewhere := splitByNode(refs, out.Node)
	out.Elsewhere = elsewhere
	var actErr error
	if len(mine) > 0 {
		// The MTA's tools get their own deadline: the admin one
		// (openAdmin's) is for the store.
		mctx, cancel := context.WithTimeout(ctx, mtaTimeout)
		out.Results, actErr = mtaqueue.Act(mctx, mta, act, mine)
		cancel()
	}
	if f.asJSON {
		if err := writeJSON(stdout, out); err != nil {
			return err
		}
	} else {
		printActed(stdout, t, mta.Name(), out, refs)
	}
	if actErr != nil {
		return actErr
	}
	if n := failures(out.Results); n > 0 {
		return fmt.Errorf("thread %s: %s: %d of %d ids on node %s were not done", t, act, n, len(out.Results), text.Clean(out.Node, 0))
	}
	return nil
}

// open makes the MTA named by --mta.
func (f *queueFlags) open(t policy.ThreadID) (mtaqueue.MTA, error) {
	switch f.mta {
	case "postfix":
		return mtaqueue.NewPostfix(f.postfixConfig)
	case "sendmail":
		s, err := mtaqueue.NewSendmail(f.sendmailCF, f.sendmailQueue, f.sendmailBin)
		if err != nil {
			return nil, err
		}
		s.Reason = "stormguard: thread " + string(t) + " held by " + operator()
		return s, nil
	}
	return nil, fmt.Errorf("--mta %q: want postfix or sendmail", f.mta)
}

// thisNode is the node name the daemon on this host records in its queue
// ids: --node, else the config's node (default the host name), as the
// recorder has it.
func (f *queueFlags) thisNode(cfg *config.Config) string {
	if f.node != "" || cfg == nil {
		return f.node
	}
	return cfg.ReportConfig().Node
}

// splitByNode returns node's ids, each once, oldest first, and the other
// nodes' ids by node.
func splitByNode(refs []history.QueueRef, node string) (mine []string, elsewhere map[string][]string) {
	seen := map[string]bool{}
	for _, r := range refs {
		if r.Node != node {
			if elsewhere == nil {
				elsewhere = map[string][]string{}
			}
			elsewhere[r.Node] = append(elsewhere[r.Node], r.ID)
			continue
		}
		if !seen[r.ID] {
			seen[r.ID] = true
			mine = append(mine, r.ID)
		}
	}
	return mine, elsewhere
}

func failures(rs []mtaqueue.Result) int {
	n := 0
	for _, r := range rs {
		switch r.Outcome {
		case mtaqueue.Failed, mtaqueue.Ambiguous, mtaqueue.Invalid:
			n++
		}
	}
	return n
}

// printQueued prints the listing.
func printQueued(w io.Writer, t policy.ThreadID, refs []history.QueueRef) error {
	if len(refs) == 0 {
		fmt.Fprintf(w, "thread %s: no queue ids stored (none let through on a large audience, or its history has expired)\n", t)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tQUEUE ID\tKIND\tSTATUS\tTIME\tSENDER")
	for _, r := range refs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", text.Clean(r.Node, 40), text.Clean(r.ID, 40), text.Clean(r.Kind, 12),
			text.Clean(r.Status, 12), r.Time.Format(time.RFC3339), orDash(text.Clean(r.Sender, 60)))
	}
	return tw.Flush()
}

// printActed prints per id what was done, then the other nodes' ids.
func printActed(w io.Writer, t policy.ThreadID, mta string, out queueResult, refs []history.QueueRef) {
	ref := map[string]history.QueueRef{}
	for _, r := range refs {
		if _, ok := ref[r.ID]; !ok && r.Node == out.Node {
			ref[r.ID] = r
		}
	}
	fmt.Fprintf(w, "thread %s: %s on node %s, %s\n", t, out.Action, text.Clean(out.Node, 0), mta)
	if len(out.Results) == 0 {
		fmt.Fprintf(w, "no queue ids stored for node %s\n", text.Clean(out.Node, 0))
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "QUEUE ID\tKIND\tSENDER\tRESULT")
		for _, r := range out.Results {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", text.Clean(r.ID, 40), text.Clean(ref[r.ID].Kind, 12),
				orDash(text.Clean(ref[r.ID].Sender, 60)), describe(r))
		}
		tw.Flush()
	}
	nodes := make([]string, 0, len(out.Elsewhere))
	for n := range out.Elsewhere {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for _, n := range nodes {
		fmt.Fprintf(w, "on node %s: %d ids (%s); run there: stormguard queue %s --%s\n", text.Clean(n, 40), len(out.Elsewhere[n]),
			text.Clean(strings.Join(out.Elsewhere[n], " "), 200), t, out.Action)
	}
}

// describe says in words what happened to one id.
func describe(r mtaqueue.Result) string {
	was := ""
	if r.Queue != "" {
		was = " (was in " + text.Clean(r.Queue, 20) + ")"
	}
	switch r.Outcome {
	case mtaqueue.Gone:
		return "already gone: not in the queue (delivered, bounced or removed)"
	case mtaqueue.AlreadyHeld:
		return "already on hold: nothing done"
	case mtaqueue.NotHeld:
		return "not on hold" + was + ": nothing done"
	case mtaqueue.Invalid:
		return "not a queue id: refused, nothing done"
	case mtaqueue.Ambiguous:
		return "not done: another queued message's id contains it"
	case mtaqueue.Failed:
		return "FAILED: the MTA's tool ran and it is still there" + was
	}
	return string(r.Outcome) + was
}
