package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/bench/noop"
	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/store"
)

// target is a milter the driver loads: started in this process, or an
// external address.
type target struct {
	name string
	addr string // host:port
	pid  int    // whose RSS to report; 0: none
	stop func()
}

// startNoop runs the no-op baseline milter on a loopback port.
func startNoop() (*target, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := noop.NewServer()
	done := make(chan error, 1)
	go func() { done <- noop.Serve(srv, ln) }()
	return &target{name: "noop", addr: ln.Addr().String(), stop: func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}}, nil
}

// filterConfig is the daemon's default configuration with the bench list.
func filterConfig() milter.Config {
	cfg := milter.Defaults()
	cfg.Lists = map[string]int{listAddr: listSize}
	return cfg
}

// startStormguard runs stormguard's milter on a loopback port, with the
// memory store (redisAddr "") or Redis, configured like `stormguard serve`
// with its defaults: info-level text logs (to io.Discard here, so the
// formatting is paid but not the terminal), the globals refresher running.
func startStormguard(name, redisAddr string) (*target, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var st, fallback store.Store = store.NewMemory(), store.Store(nil)
	if redisAddr != "" {
		r, err := store.OpenRedis(store.RedisConfig{Addrs: []string{redisAddr}, Timeout: 200 * time.Millisecond})
		if err != nil {
			return nil, err
		}
		st, fallback = r, store.NewMemory()
	}
	f, err := milter.NewFilter(filterConfig(), st, fallback, log, nil)
	if err != nil {
		return nil, err
	}
	if err := f.RefreshGlobals(context.Background()); err != nil {
		return nil, fmt.Errorf("%s: read globals: %w", name, err)
	}
	ln, err := milter.Listen("inet:127.0.0.1:0", 0)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go f.RunRefresher(ctx)
	srv := milter.NewServer(f)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	return &target{name: name, addr: ln.Addr().String(), stop: func() {
		cancel()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
		<-done
		if s := f.Stats.StoreErrors.Load(); s > 0 {
			fmt.Fprintf(os.Stderr, "%s: %d store errors (fallbacks %d)\n", name, s, f.Stats.Fallbacks.Load())
		}
		_ = st.Close()
	}}, nil
}

// startRedis starts a private redis-server (no persistence) on a free
// loopback port and returns its address and a stop function.
func startRedis() (string, func(), error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, fmt.Errorf("redis target: %w (apt-get install redis-server, or pass -redis ADDR)", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "sgbench-redis-")
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1",
		"--port", strconv.Itoa(port), "--dir", dir)
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
		_ = os.RemoveAll(dir)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.Ping(context.Background()).Err()
		if err == nil {
			return addr, stop, nil
		}
		select {
		case <-exited:
			stop()
			return "", nil, errors.New("redis-server exited at start")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("redis-server on %s: %w", addr, err)
		}
	}
}

// rss returns a process's resident set size in bytes (VmRSS), or 0.
func rss(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
