package events

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// publishOutlet publishes each event once (Redis pub/sub).
func publishOutlet(publish func(ctx context.Context, msg string) error, timeout time.Duration) *outlet {
	return &outlet{name: "redis", attempts: 1, send: func(ctx context.Context, e Event) error {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return publish(ctx, string(b))
	}}
}

// logOutlet logs each event (the memory store has no channel).
func logOutlet(log *slog.Logger) *outlet {
	return &outlet{name: "log", attempts: 1, send: func(_ context.Context, e Event) error {
		b, _ := json.Marshal(e)
		log.Info("event", "type", e.Type, "thread", e.Thread, "event", string(b))
		return nil
	}}
}

// webhookOutlet POSTs each event, trying 4 times with backoff from 500ms.
func webhookOutlet(url string, timeout time.Duration, userAgent string) *outlet {
	client := &http.Client{Timeout: timeout}
	return &outlet{name: "webhook", attempts: 4, backoff: 500 * time.Millisecond,
		send: func(ctx context.Context, e Event) error { return postJSON(ctx, client, url, userAgent, e) }}
}

func postJSON(ctx context.Context, client *http.Client, url, userAgent string, e Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if userAgent != "" {
		req.Header.Set("User-Agent", userAgent)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}
