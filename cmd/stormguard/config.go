package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// defaultConfigFile is read when --config is not given and the file exists.
const defaultConfigFile = "/etc/stormguard/stormguard.yaml"

// setting is one configuration key: its default and what it means. This
// table is the one place defaults live; the README's config table and the
// sample stormguard.yaml are checked against it.
type setting struct {
	Key     string
	Default any
	Help    string
}

// defaultFilter and defaultPolicy are milter's and policy's own statements
// of the documented defaults.
var (
	defaultFilter = milter.Defaults()
	defaultPolicy = defaultFilter.Policy
)

var settings = []setting{
	{"listen", "inet:127.0.0.1:7357", "milter socket, Postfix notation: inet:HOST:PORT or unix:/path"},
	{"listen_mode", "0660", "permissions of a unix listen socket (octal)"},
	{"mode", string(defaultFilter.Mode), "default site mode when Redis key stormguard:mode is unset: enforce, monitor or off"},
	{"log.level", "info", "debug, info, warn or error; small-audience decisions are logged at debug"},
	{"log.format", "text", "text or json"},
	{"store.backend", "memory", "memory (one node) or redis (shared by all nodes)"},
	{"store.on_error", defaultFilter.OnError, "when Redis fails: accept (count on this node's memory store) or tempfail"},
	{"store.refresh", defaultFilter.Refresh, "how often lists, exempt senders and mode are re-read from the store"},
	{"store.retention", defaultFilter.Retention, "how long thread records and message-id links are kept"},
	{"redis.addrs", []string{"127.0.0.1:6379"}, "Redis address(es); Sentinel addresses with master_name; seed nodes with cluster"},
	{"redis.username", "", "Redis ACL user"},
	{"redis.password", "", "Redis password"},
	{"redis.db", 0, "Redis database number (standalone and Sentinel)"},
	{"redis.master_name", "", "Sentinel master name; set to use Sentinel"},
	{"redis.cluster", false, "true for Redis Cluster"},
	{"redis.tls.enabled", false, "connect to Redis with TLS"},
	{"redis.tls.ca_file", "", "PEM CA bundle to verify Redis with (system roots when empty)"},
	{"redis.tls.cert_file", "", "client certificate (PEM) for mutual TLS"},
	{"redis.tls.key_file", "", "client key (PEM) for mutual TLS"},
	{"redis.tls.server_name", "", "name to verify in Redis's certificate"},
	{"redis.timeout", defaultFilter.StoreTimeout, "deadline of every Redis call"},
	{"redis.prefix", "stormguard:", "prefix of every Redis key"},
	{"policy.min_audience", defaultPolicy.MinAudience, "a reply counts toward a storm only if its own audience is at least this"},
	{"policy.max_replies", defaultPolicy.Limits.MaxReplies, "large-audience replies allowed per thread per window (0 disables the rule)"},
	{"policy.delivery_budget", defaultPolicy.Limits.DeliveryBudget, "sum of audiences of the replies allowed per thread per window (0 disables the rule)"},
	{"policy.window", defaultPolicy.Limits.Window, "sliding window"},
	{"policy.block_for", defaultPolicy.Limits.BlockFor, "how long a storming thread stays blocked"},
	{"policy.action", string(defaultPolicy.Action), "reject (550 5.7.1), tempfail (451 4.7.1) or monitor (accept and add the header)"},
	{"policy.auto_reply_max_audience", defaultPolicy.AutoReplyMaxAudience, "auto-replies to a larger audience are refused"},
	{"policy.exempt_senders", []string{}, "senders (or @domain) never limited; Redis set stormguard:exempt adds more"},
	{"policy.reject_text", defaultFilter.RejectText, "text of the 550 refusal; {thread} is the thread id"},
	{"policy.tempfail_text", defaultFilter.TempfailText, "text of the 451 refusal; {thread} is the thread id"},
	{"policy.header", defaultFilter.Header, "header added in monitor mode"},
	{"lists", map[string]int{}, "list address -> member count; Redis hash stormguard:lists adds more and wins"},
	{"http.listen", "127.0.0.1:9357", "HOST:PORT of the HTTP server for /metrics, /healthz, /readyz and the admin API /admin/; empty disables it"},
	{"http.admin", string(adminAuto), "serve the admin API /admin/ (what the subcommands use with the memory store; no authentication): auto (only when http.listen is a loopback address), true (on any http.listen: firewall it) or false"},
	{"alerts.webhook_url", "", "http(s) URL that every event is POSTed to as Slack/Teams-style JSON; empty: none"},
	{"alerts.webhook_timeout", 5 * time.Second, "deadline of one webhook POST; a failed POST is retried 3 times with backoff"},
	{"alerts.summary_every", time.Minute, "blocked replies are reported in one summary event per thread this often"},
	{"alerts.queue", 1000, "events waiting for Redis or the webhook; when full, new events are dropped and counted"},
}

// Config is the whole configuration, decoded from viper.
type Config struct {
	Listen     string `mapstructure:"listen"`
	ListenMode string `mapstructure:"listen_mode"`
	Mode       string `mapstructure:"mode"`
	Log        struct {
		Level  string `mapstructure:"level"`
		Format string `mapstructure:"format"`
	} `mapstructure:"log"`
	Store struct {
		Backend   string        `mapstructure:"backend"`
		OnError   string        `mapstructure:"on_error"`
		Refresh   time.Duration `mapstructure:"refresh"`
		Retention time.Duration `mapstructure:"retention"`
	} `mapstructure:"store"`
	Redis struct {
		Addrs      []string `mapstructure:"addrs"`
		Username   string   `mapstructure:"username"`
		Password   string   `mapstructure:"password"`
		DB         int      `mapstructure:"db"`
		MasterName string   `mapstructure:"master_name"`
		Cluster    bool     `mapstructure:"cluster"`
		TLS        struct {
			Enabled    bool   `mapstructure:"enabled"`
			CAFile     string `mapstructure:"ca_file"`
			CertFile   string `mapstructure:"cert_file"`
			KeyFile    string `mapstructure:"key_file"`
			ServerName string `mapstructure:"server_name"`
		} `mapstructure:"tls"`
		Timeout time.Duration `mapstructure:"timeout"`
		Prefix  string        `mapstructure:"prefix"`
	} `mapstructure:"redis"`
	Policy struct {
		MinAudience          int           `mapstructure:"min_audience"`
		MaxReplies           int           `mapstructure:"max_replies"`
		DeliveryBudget       int64         `mapstructure:"delivery_budget"`
		Window               time.Duration `mapstructure:"window"`
		BlockFor             time.Duration `mapstructure:"block_for"`
		Action               string        `mapstructure:"action"`
		AutoReplyMaxAudience int           `mapstructure:"auto_reply_max_audience"`
		ExemptSenders        []string      `mapstructure:"exempt_senders"`
		RejectText           string        `mapstructure:"reject_text"`
		TempfailText         string        `mapstructure:"tempfail_text"`
		Header               string        `mapstructure:"header"`
	} `mapstructure:"policy"`
	Lists map[string]int `mapstructure:"lists"`
	HTTP  struct {
		Listen string       `mapstructure:"listen"`
		Admin  adminSetting `mapstructure:"admin"`
	} `mapstructure:"http"`
	Alerts struct {
		WebhookURL     string        `mapstructure:"webhook_url"`
		WebhookTimeout time.Duration `mapstructure:"webhook_timeout"`
		SummaryEvery   time.Duration `mapstructure:"summary_every"`
		Queue          int           `mapstructure:"queue"`
	} `mapstructure:"alerts"`
}

// loadConfig reads defaults, the config file, STORMGUARD_* environment
// variables and flags, in viper's order (flags win), and validates the result.
func loadConfig(path string, explicit bool, flags *pflag.FlagSet) (*Config, *viper.Viper, error) {
	v := newViper()
	if path == "" {
		path = defaultConfigFile
	}
	if _, err := os.Stat(path); err == nil || explicit {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if flags != nil {
		for flag, key := range flagKeys {
			if f := flags.Lookup(flag); f != nil {
				if err := v.BindPFlag(key, f); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	var cfg Config
	if err := v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.ErrorUnused = true
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			durationHook,
			mapstructure.StringToSliceHookFunc(","),
			listsHook,
			boolStringHook,
		)
	}); err != nil {
		return nil, nil, fmt.Errorf("config: %s", admin.OneLine(errors.New(describeDecodeError(err))))
	}
	if err := cfg.validate(); err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	return &cfg, v, nil
}

// flagKeys maps serve's flags to config keys.
var flagKeys = map[string]string{
	"listen":    "listen",
	"log-level": "log.level",
	"backend":   "store.backend",
}

func newViper() *viper.Viper {
	v := viper.New()
	for _, s := range settings {
		v.SetDefault(s.Key, s.Default)
	}
	v.SetEnvPrefix("STORMGUARD")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	return v
}

// listsHook accepts the lists setting as a map or, from the environment, as
// "addr=count,addr=count". Viper splits keys at dots, so a YAML map keyed by
// list addresses arrives nested ({"all-staff@example": {"org": 3000}}); the
// hook joins it back.
var listsHook mapstructure.DecodeHookFuncType = func(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(map[string]int{}) {
		return data, nil
	}
	switch d := data.(type) {
	case string:
		return parseListsEnv(d)
	case map[string]any:
		out := map[string]any{}
		flattenLists("", d, out)
		return out, nil
	}
	return data, nil
}

// durationHook reads a duration from a string (60m, 6h, 200ms), and says
// which value it could not read (mapstructure's own hook drops it).
var durationHook mapstructure.DecodeHookFuncType = func(from, to reflect.Type, data any) (any, error) {
	s, ok := data.(string)
	if !ok || to != reflect.TypeFor[time.Duration]() {
		return data, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%s is not %s", quoteValue(s), typeWords(to))
	}
	return d, nil
}

// adminSetting is http.admin: auto, true or false.
type adminSetting string

// boolStringHook lets a YAML true or false set http.admin.
var boolStringHook mapstructure.DecodeHookFuncType = func(_, to reflect.Type, data any) (any, error) {
	if b, ok := data.(bool); ok && to == reflect.TypeFor[adminSetting]() {
		return strconv.FormatBool(b), nil
	}
	return data, nil
}

func flattenLists(prefix string, m map[string]any, out map[string]any) {
	for k, v := range m {
		if prefix != "" {
			k = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok {
			flattenLists(k, sub, out)
			continue
		}
		out[strings.ToLower(k)] = v
	}
}

func parseListsEnv(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		addr, n, ok := strings.Cut(pair, "=")
		count, err := strconv.Atoi(strings.TrimSpace(n))
		if !ok || err != nil {
			return nil, fmt.Errorf("lists: %q is not address=count", pair)
		}
		out[strings.ToLower(strings.TrimSpace(addr))] = count
	}
	return out, nil
}

func (c *Config) validate() error {
	if _, _, err := milter.ParseListen(c.Listen); err != nil {
		return err
	}
	if _, err := c.socketMode(); err != nil {
		return err
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format: %q is not text or json", c.Log.Format)
	}
	switch c.Store.Backend {
	case "memory":
	case "redis":
		if err := c.redisConfig().Validate(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("store.backend: %q is not memory or redis", c.Store.Backend)
	}
	if c.Redis.TLS.Enabled {
		if _, err := c.tlsConfig(); err != nil {
			return err
		}
	}
	if err := c.validateOps(); err != nil {
		return err
	}
	if c.Policy.Header == "" || strings.ContainsAny(c.Policy.Header, ": \t\r\n") {
		return fmt.Errorf("policy.header: %q is not a header name", c.Policy.Header)
	}
	return c.filterConfig().Validate()
}

func (c *Config) socketMode() (os.FileMode, error) {
	m, err := strconv.ParseUint(c.ListenMode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("listen_mode: %q is not an octal file mode like 0660", c.ListenMode)
	}
	return os.FileMode(m), nil
}

func (c *Config) policyConfig() policy.Config {
	return policy.Config{
		MinAudience:          c.Policy.MinAudience,
		AutoReplyMaxAudience: c.Policy.AutoReplyMaxAudience,
		Action:               policy.ConfigAction(c.Policy.Action),
		Limits: policy.Limits{
			MaxReplies:     c.Policy.MaxReplies,
			DeliveryBudget: c.Policy.DeliveryBudget,
			Window:         c.Policy.Window,
			BlockFor:       c.Policy.BlockFor,
		},
	}
}

func (c *Config) filterConfig() milter.Config {
	return milter.Config{
		Policy:       c.policyConfig(),
		RejectText:   c.Policy.RejectText,
		TempfailText: c.Policy.TempfailText,
		Header:       c.Policy.Header,
		OnError:      c.Store.OnError,
		StoreTimeout: c.Redis.Timeout,
		Retention:    c.Store.Retention,
		Refresh:      c.Store.Refresh,
		Lists:        c.Lists,
		Exempt:       c.Policy.ExemptSenders,
		Mode:         policy.Mode(c.Mode),
	}
}

func (c *Config) redisConfig() store.RedisConfig {
	rc := store.RedisConfig{
		Addrs:      c.Redis.Addrs,
		Username:   c.Redis.Username,
		Password:   c.Redis.Password,
		DB:         c.Redis.DB,
		MasterName: c.Redis.MasterName,
		Cluster:    c.Redis.Cluster,
		Timeout:    c.Redis.Timeout,
		Prefix:     c.Redis.Prefix,
	}
	if c.Redis.TLS.Enabled {
		rc.TLS, _ = c.tlsConfig() // validated in validate
	}
	return rc
}

func (c *Config) eventsConfig() events.Config {
	return events.Config{
		Queue:          c.Alerts.Queue,
		WebhookURL:     c.Alerts.WebhookURL,
		WebhookTimeout: c.Alerts.WebhookTimeout,
		UserAgent:      userAgent(),
		PublishTimeout: max(c.Redis.Timeout, time.Second),
	}
}

func (c *Config) adminConfig() admin.Config {
	return admin.Config{Backend: c.Store.Backend, Retention: c.Store.Retention, Lists: c.Lists, Mode: c.Mode}
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
