package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/policy"
)

// TestParseTally: record.lua's reply is checked value by value; a reply of
// the wrong shape is an error, never a panic or a silent zero.
func TestParseTally(t *testing.T) {
	reply := func(v any, err error) *redis.Cmd {
		c := redis.NewCmd(context.Background())
		c.SetVal(v)
		c.SetErr(err)
		return c
	}
	good := []any{"allow", "crossed", int64(3), int64(9000), "max_replies", int64(21600000)}
	got, err := parseTally(reply(good, nil))
	w := policy.Tally{Override: policy.OverrideAllow, Status: policy.StatusCrossed, Count: 3, Delivered: 9000,
		Crossed: policy.RuleMaxReplies, BlockTTL: 6 * time.Hour}
	if err != nil || got != w {
		t.Errorf("parseTally(good) = %+v, %v; want %+v", got, err, w)
	}
	for name, v := range map[string]any{
		"not an array":   "OK",
		"short":          good[:5],
		"long":           append(good[:6:6], ""),
		"count a string": []any{"", "counted", "3", int64(0), "", int64(0)},
		"status an int":  []any{"", int64(1), int64(3), int64(0), "", int64(0)},
		"unknown status": []any{"", "maybe", int64(3), int64(0), "", int64(0)},
		"redirect":       []any{"", "redirect", int64(0), int64(0), "", int64(0)},
		"nil value":      []any{nil, "counted", int64(3), int64(0), "", int64(0)},
	} {
		if _, err := parseTally(reply(v, nil)); err == nil {
			t.Errorf("parseTally(%s) succeeded", name)
		}
	}
	boom := errors.New("boom")
	if _, err := parseTally(reply(nil, boom)); !errors.Is(err, boom) {
		t.Errorf("parseTally(error) = %v, want the command's error", err)
	}
}
