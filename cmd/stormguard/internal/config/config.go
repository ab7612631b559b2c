package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/listsync"
	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// DefaultFile is read when --config is not given and the file exists.
const DefaultFile = "/etc/stormguard/stormguard.yaml"

// Config is the whole configuration, in the configuration file's
// sections. keys.go declares each key once: its name, its meaning and the
// field it sets here; plain (below) is how the fields reach the packages'
// configs, and defaults is what the packages say when nothing is set.
type Config struct {
	Listen     string
	ListenMode string
	Mode       string
	Node       string
	Log        struct{ Level, Format string }
	Store      struct {
		Backend          string
		OnError          string
		Budget           time.Duration
		Refresh          time.Duration
		Retention        time.Duration
		MemoryMaxThreads int
		MemoryMaxBytes   int64
	}
	Redis struct {
		Addrs      []string
		Username   string
		Password   string
		DB         int
		MasterName string
		Cluster    bool
		TLS        struct { // read by tlsConfig into store.RedisConfig.TLS
			Enabled                               bool
			CAFile, CertFile, KeyFile, ServerName string
		}
		Timeout      time.Duration
		Prefix       string
		WaitReplicas int
		WaitTimeout  time.Duration
	}
	Policy struct {
		MinAudience int
		// Limits holds policy.window, policy.block_for and the limit
		// rules' keys (policy.LimitRules).
		Limits               policy.Limits
		Action               string
		AutoReplyMaxAudience int
		SplitEnvelopes       bool
		RecipientDelimiter   string
		LocalDomains         []string
		ExemptSenders        []string
		SenderAuth           bool
		TrustedNetworks      []string
		RejectText           string
		TempfailText         string
		Header               string
	}
	Gate struct {
		MinAudience int
		Action      string
		Posters     []string
		RejectText  string
	}
	Lists      map[string]int
	ListPolicy map[string]policy.ListPolicy
	ListSync   struct {
		Every            time.Duration
		Timeout          time.Duration
		MinMembers       int
		AliasMaps        []string
		AliasDomains     []string
		VirtualMaps      []string
		PostfixConfigDir string
		LDAP             listsync.LDAPConfig
	}
	Milter milter.Limits
	HTTP   struct {
		Listen                  string
		MaxConnections          int
		MaxConnectionsPerClient int
		IdleTimeout             time.Duration
		ReadHeaderTimeout       time.Duration
		Admin                   adminSetting
		AdminTokenFile          string
	}
	Alerts struct {
		WebhookURL     string
		WebhookTimeout time.Duration
		SummaryEvery   time.Duration
		Queue          int
	}
	Report struct {
		History   time.Duration
		NearMiss  float64
		MaxStorms int
	}
	Notify events.MailConfig // but ReportURL, which plain sets
}

// defaults is the configuration when nothing is set: the packages' own
// Defaults(), and the defaults of the keys only the commands read.
// TestDefaultsReachPackages holds it to plain: what defaults sets, plain
// gives back to every package unchanged.
func defaults() Config {
	d := defaultPlain()
	f, p, e, ls := d.Filter, d.Filter.Policy, d.Events, d.ListSync
	var c Config
	c.Listen, c.ListenMode = "inet:127.0.0.1:7357", "0660"
	c.Mode = string(f.Mode)
	c.Log.Level, c.Log.Format = "info", "text"
	c.Store.Backend, c.Store.OnError, c.Store.Refresh, c.Store.Retention = "memory", f.OnError, f.Refresh, f.Retention
	c.Store.Budget = f.StoreBudget
	c.Store.MemoryMaxThreads, c.Store.MemoryMaxBytes = d.Memory.MaxThreads, d.Memory.MaxBytes
	r := d.Redis
	c.Redis.Addrs, c.Redis.Username, c.Redis.Password, c.Redis.DB = r.Addrs, r.Username, r.Password, r.DB
	c.Redis.MasterName, c.Redis.Cluster, c.Redis.Timeout, c.Redis.Prefix = r.MasterName, r.Cluster, r.Timeout, r.Prefix
	c.Redis.WaitReplicas, c.Redis.WaitTimeout = r.WaitReplicas, r.WaitTimeout
	c.Policy.MinAudience, c.Policy.Limits, c.Policy.Action = p.MinAudience, p.Limits, string(p.Action)
	c.Policy.AutoReplyMaxAudience, c.Policy.SplitEnvelopes, c.Policy.ExemptSenders = p.AutoReplyMaxAudience, p.SplitEnvelopes, f.Exempt
	c.Policy.RejectText, c.Policy.TempfailText, c.Policy.Header = f.RejectText, f.TempfailText, f.Header
	c.Policy.SenderAuth = f.SenderAuth
	for _, n := range f.TrustedNetworks {
		c.Policy.TrustedNetworks = append(c.Policy.TrustedNetworks, n.String())
	}
	c.Policy.RecipientDelimiter, c.Policy.LocalDomains = f.Recipients.Delimiter, f.Recipients.LocalDomains
	c.Gate.MinAudience, c.Gate.Action, c.Gate.Posters, c.Gate.RejectText = p.Gate.MinAudience, string(p.Gate.Action), f.Posters, f.GateRejectText
	c.Lists, c.ListPolicy = f.Lists, f.ListPolicies
	c.ListSync.Timeout, c.ListSync.MinMembers, c.ListSync.LDAP = ls.Timeout, ls.MinMembers, ls.LDAP
	c.ListSync.AliasMaps, c.ListSync.AliasDomains, c.ListSync.VirtualMaps = ls.AliasMaps, ls.AliasDomains, ls.VirtualMaps
	c.ListSync.PostfixConfigDir = ls.PostfixConfigDir
	c.Milter = d.Server
	c.HTTP.Listen, c.HTTP.MaxConnections, c.HTTP.IdleTimeout = "127.0.0.1:9357", 64, 60*time.Second
	c.HTTP.MaxConnectionsPerClient, c.HTTP.ReadHeaderTimeout = 8, 5*time.Second
	c.HTTP.Admin, c.HTTP.AdminTokenFile = adminAuto, "/var/lib/stormguard/admin.token"
	c.Alerts.WebhookURL, c.Alerts.WebhookTimeout, c.Alerts.Queue = e.WebhookURL, e.WebhookTimeout, e.Queue
	c.Alerts.SummaryEvery = d.SummaryEvery
	c.Report.History, c.Report.NearMiss, c.Report.MaxStorms = d.Report.History, d.Report.NearMiss, d.Report.MaxStorms
	c.Notify = e.Mail
	return c
}

// plain holds the plain configs the packages take. Config.plain fills it
// from the keys' to tags, over defaultPlain.
type plain struct {
	Filter       milter.Config
	Redis        store.RedisConfig
	Events       events.Config
	Admin        admin.Config
	Memory       store.MemoryConfig
	Server       milter.Limits
	SummaryEvery time.Duration // events.Summarizer's period
	ListSync     listsync.Config
	Report       history.Config
}

// defaultPlain is what the packages say when nothing is configured.
func defaultPlain() plain {
	return plain{
		Filter:       milter.Defaults(),
		Redis:        store.RedisDefaults(),
		Memory:       store.MemoryDefaults(),
		Events:       events.Defaults(),
		Server:       milter.DefaultLimits(),
		SummaryEvery: events.DefaultSummaryEvery,
		ListSync:     listsync.Defaults(),
		Report:       history.Defaults(),
	}
}

// plain maps c into the packages' configs: each key into the fields it
// sets (a few set two packages' fields), then what no key sets.
func (c *Config) plain() plain {
	var p plain
	f := milter.Defaults()
	f.Mode, f.OnError, f.Refresh, f.Retention = policy.Mode(c.Mode), c.Store.OnError, c.Store.Refresh, c.Store.Retention
	f.StoreTimeout, f.StoreBudget = c.Redis.Timeout, c.Store.Budget
	f.Policy.MinAudience, f.Policy.Limits, f.Policy.Action = c.Policy.MinAudience, c.Policy.Limits, policy.ConfigAction(c.Policy.Action)
	f.Policy.AutoReplyMaxAudience, f.Policy.SplitEnvelopes, f.Exempt = c.Policy.AutoReplyMaxAudience, c.Policy.SplitEnvelopes, c.Policy.ExemptSenders
	f.RejectText, f.TempfailText, f.Header = c.Policy.RejectText, c.Policy.TempfailText, c.Policy.Header
	f.Recipients = policy.Recipients{Delimiter: c.Policy.RecipientDelimiter, LocalDomains: c.Policy.LocalDomains}
	f.Policy.Gate = policy.Gate{MinAudience: c.Gate.MinAudience, Action: policy.ConfigAction(c.Gate.Action)}
	f.Posters, f.GateRejectText = c.Gate.Posters, c.Gate.RejectText
	f.Lists, f.ListPolicies = c.Lists, c.ListPolicy
	f.SenderAuth, f.TrustedNetworks = c.Policy.SenderAuth, nil
	for _, s := range c.Policy.TrustedNetworks {
		n, _ := parseNetwork(s) // validated in validate
		f.TrustedNetworks = append(f.TrustedNetworks, n)
	}
	p.Filter = f
	node := c.Node
	if node == "" {
		node = hostname()
	}
	p.Filter.Node = node

	p.Redis = store.RedisConfig{Addrs: c.Redis.Addrs, Username: c.Redis.Username, Password: c.Redis.Password, DB: c.Redis.DB,
		MasterName: c.Redis.MasterName, Cluster: c.Redis.Cluster, Timeout: c.Redis.Timeout, Prefix: c.Redis.Prefix,
		WaitReplicas: c.Redis.WaitReplicas, WaitTimeout: c.Redis.WaitTimeout}
	if c.Redis.TLS.Enabled {
		p.Redis.TLS, _ = c.tlsConfig() // validated in validate
	}
	p.Memory = store.MemoryConfig{MaxThreads: c.Store.MemoryMaxThreads, MaxBytes: c.Store.MemoryMaxBytes}
	p.Server = c.Milter

	p.Admin = admin.Config{Backend: c.Store.Backend, Retention: c.Store.Retention, Lists: c.Lists, Mode: c.Mode,
		Posters: c.Gate.Posters, Policy: f.Policy, ListPolicies: c.ListPolicy}

	p.Events = events.Config{Queue: c.Alerts.Queue, WebhookURL: c.Alerts.WebhookURL, WebhookTimeout: c.Alerts.WebhookTimeout,
		PublishTimeout: max(c.Redis.Timeout, time.Second), Node: node, Mail: c.Notify}
	if p.Events.Mail.OncePer == 0 {
		p.Events.Mail.OncePer = c.Policy.Limits.BlockFor
	}
	p.Events.Mail.ReportURL = c.reportURL()
	p.SummaryEvery = c.Alerts.SummaryEvery

	p.ListSync = listsync.Config{LDAP: c.ListSync.LDAP, AliasMaps: c.ListSync.AliasMaps, AliasDomains: c.ListSync.AliasDomains,
		VirtualMaps: c.ListSync.VirtualMaps, PostfixConfigDir: c.ListSync.PostfixConfigDir,
		MinMembers: c.ListSync.MinMembers, Timeout: c.ListSync.Timeout}

	p.Report = history.Config{Node: node, History: c.Report.History, NearMiss: c.Report.NearMiss, MaxStorms: c.Report.MaxStorms,
		Retention: c.Store.Retention, Limits: c.Policy.Limits, Timeout: max(c.Redis.Timeout, time.Second)} // off the mail path
	return p
}

// FilterConfig is the milter filter's config.
func (c *Config) FilterConfig() milter.Config { return c.plain().Filter }

// MemoryConfig is the memory store's config (its caps).
func (c *Config) MemoryConfig() store.MemoryConfig { return c.plain().Memory }

// ServerLimits are the milter server's connection limits.
func (c *Config) ServerLimits() milter.Limits { return c.plain().Server }

// RedisConfig is the Redis store's config.
func (c *Config) RedisConfig() store.RedisConfig { return c.plain().Redis }

// EventsConfig is the notifier's config, without what the caller wires in:
// its UserAgent and outlets (Publish, Origins).
func (c *Config) EventsConfig() events.Config { return c.plain().Events }

// ListSyncConfig is the list sync's config (stormguard lists sync).
func (c *Config) ListSyncConfig() listsync.Config { return c.plain().ListSync }

// ReportConfig is the history recorder's config.
func (c *Config) ReportConfig() history.Config { return c.plain().Report }

// hostname is the node's name when node is not set.
func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// AdminConfig is the admin operations' config.
func (c *Config) AdminConfig() admin.Config { return c.plain().Admin }

// validate checks what the keys' oneof tags say, the keys only this command
// reads, and the packages' configs with their own Validate.
func (c *Config) validate() error {
	if err := checkOneOf(c); err != nil {
		return err
	}
	for addr := range c.ListPolicy {
		if !strings.Contains(addr, "@") {
			return fmt.Errorf("list_policy: %q is not a list address", addr)
		}
	}
	for _, s := range c.Policy.TrustedNetworks {
		if _, err := parseNetwork(s); err != nil {
			return fmt.Errorf("policy.trusted_networks: %q: want an address or a network (10.0.0.0/8, 2001:db8::/32)", s)
		}
	}
	if _, _, err := milter.ParseListen(c.Listen); err != nil {
		return err
	}
	if _, err := c.SocketMode(); err != nil {
		return err
	}
	if err := c.MemoryConfig().Validate(); err != nil {
		return err
	}
	if c.Store.Backend == "redis" {
		if err := c.RedisConfig().Validate(); err != nil {
			return err
		}
	}
	if c.Redis.TLS.Enabled {
		if _, err := c.tlsConfig(); err != nil {
			return err
		}
	}
	if err := c.validateOps(); err != nil {
		return err
	}
	if err := c.ReportConfig().Validate(); err != nil {
		return err
	}
	if err := c.ServerLimits().Validate(); err != nil {
		return err
	}
	if c.ListSync.Every < 0 {
		return fmt.Errorf("listsync.every: must be 0 (never) or positive, got %s", c.ListSync.Every)
	}
	if err := c.ListSyncConfig().Validate(); err != nil {
		return err
	}
	if c.Policy.Header == "" || strings.ContainsAny(c.Policy.Header, ": \t\r\n") {
		return fmt.Errorf("policy.header: %q is not a header name", c.Policy.Header)
	}
	return c.FilterConfig().Validate()
}

// SocketMode is listen_mode, the permissions of a unix listen socket.
func (c *Config) SocketMode() (os.FileMode, error) {
	m, err := strconv.ParseUint(c.ListenMode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("listen_mode: %q is not an octal file mode like 0660", c.ListenMode)
	}
	return os.FileMode(m), nil
}

func (c *Config) tlsConfig() (*tls.Config, error) {
	t := c.Redis.TLS
	cfg := &tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis.tls.ca_file: %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("redis.tls.cert_file and redis.tls.key_file: set both or neither")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.cert_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
