package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/internal/text"
	"github.com/stormguard/stormguard/policy"
)

// Client is API over a running daemon's /admin/ API.
type Client struct {
	base      string // http://HOST:PORT
	token     string // the admin token (ReadToken)
	userAgent string
	client    *http.Client
}

var _ API = (*Client)(nil)

// NewClient asks the daemon at base (http://HOST:PORT) with token, each
// request bounded by timeout and sent with userAgent. The daemon names the
// caller in events itself: the by arguments of Override and SetMode are
// not sent.
func NewClient(base, token string, timeout time.Duration, userAgent string) *Client {
	return &Client{base: base, token: token, userAgent: userAgent, client: &http.Client{Timeout: timeout}}
}

// do sends one request (body marshalled when not nil) and decodes the
// answer into out.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("cannot reach the stormguard daemon at %s (memory store: the admin commands talk to the running daemon): %s", c.base, text.OneLine(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("the stormguard daemon at %s: reading its answer: %s", c.base, text.OneLine(err))
	}
	if resp.StatusCode != http.StatusOK {
		var e errorBody
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("the stormguard daemon at %s answered %s to %s %s: %s (is it a stormguard with the admin API?)",
			c.base, resp.Status, method, path, text.Clean(strings.TrimSpace(string(raw)), 100))
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("the stormguard daemon at %s: bad answer to %s %s: %s", c.base, method, path, text.OneLine(err))
	}
	return nil
}

func (c *Client) Threads(ctx context.Context, limit int, all bool) ([]ThreadView, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if all {
		q.Set("all", "1")
	}
	var out []ThreadView
	err := c.do(ctx, http.MethodGet, "/admin/threads?"+q.Encode(), nil, &out)
	return out, err
}

func (c *Client) Thread(ctx context.Context, t policy.ThreadID) (ThreadView, error) {
	var out ThreadView
	err := c.do(ctx, http.MethodGet, "/admin/threads/"+string(t), nil, &out)
	return out, err
}

func (c *Client) Override(ctx context.Context, t policy.ThreadID, verb string, dur time.Duration, _ string) (OverrideResult, error) {
	var out OverrideResult
	var err error
	path := "/admin/threads/" + string(t)
	switch verb {
	case VerbReset:
		err = c.do(ctx, http.MethodPost, path+"/reset", nil, &out)
	case VerbNone:
		err = c.do(ctx, http.MethodDelete, path+"/override", nil, &out)
	default:
		req := overrideRequest{Override: verb}
		if dur != 0 {
			req.For = dur.String()
		}
		err = c.do(ctx, http.MethodPut, path+"/override", req, &out)
	}
	return out, err
}

func (c *Client) Lists(ctx context.Context) ([]ListView, error) {
	var out []ListView
	err := c.do(ctx, http.MethodGet, "/admin/lists", nil, &out)
	return out, err
}

func (c *Client) SetList(ctx context.Context, addr string, members int) (ListView, error) {
	var out ListView
	err := c.do(ctx, http.MethodPut, "/admin/lists/"+url.PathEscape(addr), listRequest{Members: members}, &out)
	return out, err
}

func (c *Client) DeleteList(ctx context.Context, addr string) (ListView, error) {
	var out ListView
	err := c.do(ctx, http.MethodDelete, "/admin/lists/"+url.PathEscape(addr), nil, &out)
	return out, err
}

func (c *Client) SetListPolicy(ctx context.Context, addr, text string) (ListView, error) {
	var out ListView
	err := c.do(ctx, http.MethodPut, "/admin/lists/"+url.PathEscape(addr)+"/policy", listPolicyRequest{Policy: text}, &out)
	return out, err
}

func (c *Client) Mode(ctx context.Context) (ModeView, error) {
	var out ModeView
	err := c.do(ctx, http.MethodGet, "/admin/mode", nil, &out)
	return out, err
}

func (c *Client) SetMode(ctx context.Context, mode, _ string) (ModeView, error) {
	var out ModeView
	err := c.do(ctx, http.MethodPut, "/admin/mode", modeRequest{Mode: mode}, &out)
	return out, err
}

func (c *Client) Storms(ctx context.Context, since time.Time, nearMisses bool, limit int) ([]StormView, error) {
	q := url.Values{"since": {since.UTC().Format(time.RFC3339Nano)}, "limit": {strconv.Itoa(limit)}}
	if nearMisses {
		q.Set("near_misses", "1")
	}
	var out []StormView
	err := c.do(ctx, http.MethodGet, "/admin/storms?"+q.Encode(), nil, &out)
	return out, err
}

func (c *Client) Storm(ctx context.Context, t policy.ThreadID) (StormView, error) {
	var out StormView
	err := c.do(ctx, http.MethodGet, "/admin/storms/"+string(t), nil, &out)
	return out, err
}

func (c *Client) Queued(ctx context.Context, t policy.ThreadID) ([]history.QueueRef, error) {
	var out []history.QueueRef
	err := c.do(ctx, http.MethodGet, "/admin/threads/"+string(t)+"/queued", nil, &out)
	return out, err
}
