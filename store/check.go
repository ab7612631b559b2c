package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stormguard/stormguard/policy"
)

// Checks and encodings both stores share, so that they refuse, read and
// write exactly the same values.

// maxIDLen bounds thread ids and keys; they are hashes, far shorter.
const maxIDLen = 64

// CheckID reports why s cannot be part of a Redis key, or nil: it must be
// 1 to 64 ASCII letters, digits, '-' or '_', so that no braces (hash
// tags), colons (the key separator) or spaces can slip in. Every thread id
// and identity key stormguard writes into a key name passes it (history's
// keys too).
func CheckID(s string) error {
	if s == "" || len(s) > maxIDLen {
		return fmt.Errorf("want 1 to %d characters", maxIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return errors.New("only letters, digits, '-' and '_'")
		}
	}
	return nil
}

// checkID is CheckID as the stores report it: ErrInvalid, naming what s is.
func checkID(what, s string) error {
	if err := CheckID(s); err != nil {
		return fmt.Errorf("%w: %s %q: %w", ErrInvalid, what, s, err)
	}
	return nil
}

// check validates a record before either store touches its state, so both
// refuse exactly the same records.
func (r *Record) check() error {
	if err := checkID("thread", string(r.Thread)); err != nil {
		return err
	}
	if r.Message != "" {
		if err := checkID("message key", string(r.Message)); err != nil {
			return err
		}
	}
	for _, k := range r.Links {
		if err := checkID("link key", string(k)); err != nil {
			return err
		}
	}
	switch r.Kind {
	case policy.KindOriginal, policy.KindReply, policy.KindAutoReply:
	default:
		return fmt.Errorf("%w: kind %q", ErrInvalid, r.Kind)
	}
	for _, lr := range policy.LimitRules {
		// Up to 2^53: record.lua counts in doubles, exact that far.
		if v := lr.Limit(r.Limits); v < 0 || v > policy.MaxLimit {
			return fmt.Errorf("%w: %s %d: want 0 (off) to 2^53", ErrInvalid, lr.Key, v)
		}
	}
	l := r.Limits
	switch {
	case r.Now.IsZero():
		return fmt.Errorf("%w: no time", ErrInvalid)
	case r.Audience < 0:
		return fmt.Errorf("%w: audience %d", ErrInvalid, r.Audience)
	case l.Window < time.Millisecond || l.BlockFor < time.Millisecond || r.Retention < time.Millisecond:
		return fmt.Errorf("%w: window, block_for and retention must be at least 1ms", ErrInvalid)
	}
	return nil
}

func checkOverride(o policy.Override) error {
	switch o {
	case policy.OverrideNone, policy.OverrideAllow, policy.OverrideBlock:
		return nil
	}
	return fmt.Errorf("%w: override %q", ErrInvalid, o)
}

// parseOverride reads a stored override value; anything but "allow" or
// "block" (an operator's typo) counts as none.
func parseOverride(v string) policy.Override {
	switch o := policy.Override(v); o {
	case policy.OverrideAllow, policy.OverrideBlock:
		return o
	}
	return policy.OverrideNone
}

func checkMode(m policy.Mode) error {
	switch m {
	case "", policy.ModeEnforce, policy.ModeMonitor, policy.ModeOff:
		return nil
	}
	return fmt.Errorf("%w: mode %q", ErrInvalid, m)
}

// parseMode reads a stored mode; an unknown value counts as unset.
func parseMode(v string) policy.Mode {
	m := policy.Mode(v)
	if m == "" || checkMode(m) != nil {
		return ""
	}
	return m
}

// member is a reply's entry in its thread's window:
// "<message key>:<sender print>:<audience>", so that the same message
// again (an MTA's retry, a relay hop) is the same entry, and a message-id
// reused by another sender or to another audience is not
// (policy.SenderPrint, policy.Repeats). A message without a message-id
// gets a random key, so it counts once and is never taken for a
// duplicate.
func (r *Record) member() (msg, member string) {
	msg = string(r.Message)
	key := msg
	if key == "" {
		var b [16]byte
		_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
		key = hex.EncodeToString(b[:])
	}
	return msg, key + ":" + policy.SenderPrint(r.Sender) + ":" + strconv.Itoa(r.Audience)
}

// sender is the envelope sender as a thread keeps it: its first
// MaxSenderLen bytes, cut at a character boundary.
func (r *Record) sender() string {
	if len(r.Sender) <= MaxSenderLen {
		return r.Sender
	}
	return strings.ToValidUTF8(r.Sender[:MaxSenderLen], "")
}

// repeatMember is the entry of a message counted once more after its
// duplicate passes ran out (the passes-th repeat): member with "#passes"
// before the audience, so it counts as an entry of its own. record.lua
// builds the same.
func repeatMember(member string, passes int) string {
	i := strings.LastIndexByte(member, ':')
	return member[:i] + "#" + strconv.Itoa(passes) + member[i:]
}

// memberAudience is the audience part of a window member (0 if malformed).
func memberAudience(m string) int64 {
	i := strings.LastIndexByte(m, ':')
	n, err := strconv.ParseInt(m[i+1:], 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// normAddr folds a list address or exempt sender the way Globals reports it.
func normAddr(what, s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return "", fmt.Errorf("%w: %s %q", ErrInvalid, what, s)
	}
	return s, nil
}

// normListPolicy checks p through the form Redis stores and returns it as
// read back from that form (posters lower case), with the form.
func normListPolicy(p policy.ListPolicy) (policy.ListPolicy, string, error) {
	q, err := policy.ParseListPolicy(p.String())
	if err != nil {
		return policy.ListPolicy{}, "", fmt.Errorf("%w: list policy %q: %s", ErrInvalid, p.String(), strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return q, q.String(), nil
}

// checkAdmin validates an admin call's thread id and context.
func checkAdmin(ctx context.Context, t policy.ThreadID) error {
	if err := checkID("thread", string(t)); err != nil {
		return err
	}
	return ctx.Err()
}
