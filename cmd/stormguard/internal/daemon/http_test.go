package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/netlimit"
	"github.com/stormguard/stormguard/internal/testenv"
)

// TestHTTPOneClientCannotStarve: one client (127.0.0.1) holds 70
// connections, half idle and half sending a request header a byte at a
// time, and opens a new one whenever one is closed; meanwhile a monitor
// on another address (127.0.0.2) asks /healthz and /metrics 40 times
// each: every one is answered within its 2 s timeout.
func TestHTTPOneClientCannotStarve(t *testing.T) {
	cfg, st, _, met := newTestFilter(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	var conns netlimit.Stats
	stop, err := startHTTP(addr, newHTTPHandler(met, st, "accept", time.Second, http.NotFoundHandler(), http.NotFoundHandler()),
		httpLimitsOf(cfg), &conns, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	const held = 70
	for i := range held {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
				if err != nil {
					continue
				}
				opened := time.Now()
				stopClose := context.AfterFunc(ctx, func() { c.Close() })
				if i%2 == 0 { // idle: wait until the server closes it
					_, _ = io.Copy(io.Discard, c)
				} else { // slow: a header line a byte at a time
					for _, b := range []byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + string(make([]byte, 4096))) {
						if _, err := c.Write([]byte{b}); err != nil {
							break
						}
						select {
						case <-ctx.Done():
						case <-time.After(100 * time.Millisecond):
						}
						if ctx.Err() != nil {
							break
						}
					}
				}
				stopClose()
				c.Close()
				if time.Since(opened) < 10*time.Millisecond { // closed at once: over a cap
					select { // an attacker's pace, not a wait for anything
					case <-ctx.Done():
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
		}()
	}
	// Wait until the flood holds its connections.
	deadline := time.Now().Add(10 * time.Second)
	for conns.Open.Load()+int64(conns.Refused.Load()) < held && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}

	monitor := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	for _, path := range []string{"/healthz", "/metrics"} {
		answered := 0
		for range 40 {
			resp, err := monitor.Get("http://" + addr + path)
			if err != nil {
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				answered++
			}
		}
		t.Logf("%s answered %d of 40 while one client held %d connections (open %d, refused %d)",
			path, answered, held, conns.Open.Load(), conns.Refused.Load())
		if answered != 40 {
			t.Errorf("%s answered %d of 40", path, answered)
		}
	}
}

// TestHTTPReadHeaderTimeout: a connection that sends its request header
// a byte at a time is closed once http.read_header_timeout has passed,
// and its slot is free again.
func TestHTTPReadHeaderTimeout(t *testing.T) {
	cfg, st, _, met := newTestFilter(t)
	lim := httpLimitsOf(cfg)
	lim.readHeader = 300 * time.Millisecond
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	var conns netlimit.Stats
	stop, err := startHTTP(addr, newHTTPHandler(met, st, "accept", time.Second, http.NotFoundHandler(), http.NotFoundHandler()),
		lim, &conns, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	var werr error
	for _, b := range []byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + string(make([]byte, 200))) {
		if _, werr = c.Write([]byte{b}); werr != nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // the slow client's pace
		if time.Since(start) > 5*time.Second {
			break
		}
	}
	took := time.Since(start)
	t.Logf("slow header: cut off after %s (%v)", took.Round(10*time.Millisecond), werr)
	if werr == nil || took > 3*time.Second {
		t.Errorf("a slow header was not cut off near read_header_timeout (300ms): %s, write error %v", took, werr)
	}
}
