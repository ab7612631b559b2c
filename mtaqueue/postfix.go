package mtaqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Postfix is a Postfix instance's queue, reached with postqueue -j (list)
// and postsuper -d / -h / -H (delete, hold, release), both run as
// `-c ConfigDir`. postsuper needs root.
type Postfix struct {
	ConfigDir string // config_directory, e.g. /etc/postfix
	postqueue string
	postsuper string
}

var _ MTA = (*Postfix)(nil)

// NewPostfix finds postqueue and postsuper for the instance whose
// main.cf is in configDir.
func NewPostfix(configDir string) (*Postfix, error) {
	if configDir == "" || strings.ContainsAny(configDir, "\x00\n") {
		return nil, fmt.Errorf("mtaqueue: postfix config directory %q: want a path such as /etc/postfix", configDir)
	}
	pq, err := lookPath("postqueue")
	if err != nil {
		return nil, err
	}
	ps, err := lookPath("postsuper")
	if err != nil {
		return nil, err
	}
	return &Postfix{ConfigDir: configDir, postqueue: pq, postsuper: ps}, nil
}

// Name implements MTA.
func (p *Postfix) Name() string { return "postfix (" + p.ConfigDir + ")" }

// List implements MTA with postqueue -j: one JSON object a message, of
// which only queue_name and queue_id are read.
func (p *Postfix) List(ctx context.Context) ([]Message, error) {
	out, err := run(ctx, "", p.postqueue, "-c", p.ConfigDir, "-j")
	if err != nil {
		return nil, fmt.Errorf("mtaqueue: list %s: %w", p.Name(), err)
	}
	return parsePostqueue(strings.NewReader(string(out)))
}

// parsePostqueue reads postqueue -j's output.
func parsePostqueue(r io.Reader) ([]Message, error) {
	dec := json.NewDecoder(r)
	var ms []Message
	for {
		var m struct {
			Queue string `json:"queue_name"`
			ID    string `json:"queue_id"`
		}
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return ms, nil
		}
		if err != nil {
			return nil, fmt.Errorf("mtaqueue: postqueue -j: %w", err)
		}
		if m.ID == "" || m.Queue == "" {
			return nil, fmt.Errorf("mtaqueue: postqueue -j: a message without queue_id or queue_name")
		}
		ms = append(ms, Message{ID: m.ID, Queue: m.Queue, Held: m.Queue == "hold"})
	}
}

// apply implements MTA: postsuper reads the ids from stdin, one a line
// ("-d -"), so a thousand ids make one run and no argument list.
func (p *Postfix) apply(ctx context.Context, a Action, ids []string) error {
	flag := map[Action]string{Delete: "-d", Hold: "-h", Release: "-H"}[a]
	for _, id := range ids {
		if !ValidID(id) { // Act never passes one; this is the last guard
			return fmt.Errorf("mtaqueue: refusing queue id %q", id)
		}
	}
	_, err := run(ctx, strings.Join(ids, "\n")+"\n", p.postsuper, "-c", p.ConfigDir, flag, "-")
	return err
}
