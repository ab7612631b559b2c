// Package mtaqueue lists this node's MTA queue and deletes, holds or
// releases chosen messages in it, with the MTA's own tools: Postfix's
// postqueue and postsuper, Sendmail's quarantine flags and its queue
// directory. It is what `stormguard queue THREAD --delete` runs.
//
// It must not reimplement a queue: it never reads or writes a queue file's
// content, and it decides what happened to a message only from the MTA's
// own listing before and after the tool ran. It must never hand anything
// but a well-formed queue id to a command (the ids come from the store,
// which other nodes and operators write), and it never uses a shell.
package mtaqueue

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

// MTA is one node's mail queue.
type MTA interface {
	// Name names the MTA and its queue for messages, e.g.
	// "postfix (/etc/postfix)".
	Name() string
	// List returns every message in the queue, held ones included.
	List(ctx context.Context) ([]Message, error)
	// apply runs the MTA's tool for a on ids, each checked with ValidID,
	// in the queue, and in the state a needs. Act judges the outcome from
	// a second List, so apply reports only a tool that failed as a whole.
	apply(ctx context.Context, a Action, ids []string) error
}

// Message is one message in the queue.
type Message struct {
	ID    string `json:"id"`
	Queue string `json:"queue"` // the MTA's name of its queue: Postfix's queue_name, Sendmail's "queue" or "quarantine"
	Held  bool   `json:"held"`  // in Postfix's hold queue, or quarantined by Sendmail: never tried until released
}

// Action is what Act does to messages.
type Action string

// Actions.
const (
	Delete  Action = "delete"  // remove the message from the queue: it is never delivered
	Hold    Action = "hold"    // put it on hold (Postfix hold queue, Sendmail quarantine)
	Release Action = "release" // take it off hold: it is tried again
)

// ParseAction checks an action's name.
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case Delete, Hold, Release:
		return a, nil
	}
	return "", fmt.Errorf("mtaqueue: unknown action %q: want delete, hold or release", s)
}

// Outcome is what Act did with one id.
type Outcome string

// Outcomes.
const (
	Deleted  Outcome = "deleted"
	Held     Outcome = "held"
	Released Outcome = "released"
	// Gone: not in the queue (delivered, bounced or removed already),
	// before the tool ran or, for hold and release, after it.
	Gone Outcome = "gone"
	// AlreadyHeld: hold of a message on hold; nothing done.
	AlreadyHeld Outcome = "already held"
	// NotHeld: release of a message not on hold; nothing done.
	NotHeld Outcome = "not held"
	// Invalid: not something a queue id can be; never handed to a tool.
	Invalid Outcome = "invalid id"
	// Ambiguous: Sendmail selects by substring of the id, and another
	// message's id contains this one; not touched.
	Ambiguous Outcome = "ambiguous"
	// Failed: the tool ran and the message is still where it was.
	Failed Outcome = "failed"
)

// Result is Act's word on one id.
type Result struct {
	ID      string  `json:"id"`
	Outcome Outcome `json:"outcome"`
	// Queue is where the message was before (its Message.Queue), ""
	// when it was not in the queue.
	Queue string `json:"queue,omitempty"`
}

// idRE is what a queue id of either MTA can look like: Postfix's short
// ids are hex, its long ids (enable_long_queue_ids) [0-9A-Za-z] with a
// "z", Sendmail's ids are alphanumeric (14 characters since 8.12). The
// lower bound keeps out postsuper's "ALL".
var idRE = regexp.MustCompile(`^[0-9A-Za-z]{6,40}$`)

// ValidID reports whether s can be a Postfix or Sendmail queue id: only
// such strings ever reach a command.
func ValidID(s string) bool { return idRE.MatchString(s) }

// Act does a to each of ids that is in m's queue in the state a needs,
// with one run of the MTA's tool, and reports per id, in the order given
// (each id once), what it did and what it found already gone. An invalid
// id is reported, never used. The error is a listing or tool failure;
// with a tool failure the results still say which ids it reached.
func Act(ctx context.Context, m MTA, a Action, ids []string) ([]Result, error) {
	if _, err := ParseAction(string(a)); err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(ids))
	var uniq []string
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			uniq = append(uniq, id)
		}
	}
	before, err := m.List(ctx)
	if err != nil {
		return nil, err
	}
	was := byID(before)
	res := make([]Result, len(uniq))
	var todo []string
	for i, id := range uniq {
		r := Result{ID: id}
		msg, ok := was[id]
		if ok {
			r.Queue = msg.Queue
		}
		switch {
		case !ValidID(id):
			r.Outcome = Invalid
		case !ok:
			r.Outcome = Gone
		case a == Hold && msg.Held:
			r.Outcome = AlreadyHeld
		case a == Release && !msg.Held:
			r.Outcome = NotHeld
		default:
			todo = append(todo, id)
		}
		res[i] = r
	}
	if len(todo) == 0 {
		return res, nil
	}
	if _, ok := m.(*Sendmail); ok {
		todo = markAmbiguous(res, todo, before)
	}
	runErr := m.apply(ctx, a, todo)
	after, err := m.List(ctx)
	if err != nil {
		return res, errors.Join(runErr, err)
	}
	now := byID(after)
	pending := make(map[string]bool, len(todo))
	for _, id := range todo {
		pending[id] = true
	}
	for i := range res {
		if !pending[res[i].ID] {
			continue
		}
		msg, ok := now[res[i].ID]
		switch {
		case a == Delete && !ok:
			res[i].Outcome = Deleted
		case !ok:
			res[i].Outcome = Gone
		case a == Hold && msg.Held:
			res[i].Outcome = Held
		case a == Release && !msg.Held:
			res[i].Outcome = Released
		default:
			res[i].Outcome = Failed
		}
	}
	if runErr != nil {
		return res, fmt.Errorf("mtaqueue: %s: %s: %w", m.Name(), a, runErr)
	}
	return res, nil
}

// markAmbiguous marks the ids of todo that are part of another queued
// message's id (Sendmail's -qI selects by substring) and returns the rest.
func markAmbiguous(res []Result, todo []string, queue []Message) []string {
	bad := map[string]bool{}
	for _, id := range todo {
		for _, m := range queue {
			if m.ID != id && strings.Contains(m.ID, id) {
				bad[id] = true
			}
		}
	}
	if len(bad) == 0 {
		return todo
	}
	var keep []string
	for _, id := range todo {
		if !bad[id] {
			keep = append(keep, id)
		}
	}
	for i := range res {
		if bad[res[i].ID] {
			res[i].Outcome = Ambiguous
		}
	}
	return keep
}

func byID(ms []Message) map[string]Message {
	m := make(map[string]Message, len(ms))
	for _, msg := range ms {
		m[msg.ID] = msg
	}
	return m
}

// lookPath finds a tool in PATH or, as Debian installs the MTAs' tools
// there and a non-login root shell may lack them in PATH, in the sbin and
// lib directories.
func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/lib"} {
		if p, err := exec.LookPath(dir + "/" + name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("mtaqueue: %s not found in PATH, /usr/sbin or /usr/lib", name)
}

// run runs a tool without a shell, stdin given, and returns its error with
// its output.
func run(ctx context.Context, stdin string, path string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = "/"
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", path, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
