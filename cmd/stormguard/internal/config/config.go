package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

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

// Config is the whole configuration and the one declaration of every key.
// Each field's tags say all there is to say about its key; everything else
// (viper's defaults, the STORMGUARD_* environment variables, serve's flags,
// the packages' configs, check, docs/configuration.md's table, the sample config's
// test) is derived from them by keys.go:
//
//   - mapstructure: the key, after its sections' names and a dot;
//   - help: what it means (docs/configuration.md's table, the flag's help);
//   - to: the fields of plain it sets, which name the package that uses it;
//     the first one's value in defaultPlain, the package's own Defaults(),
//     is the key's default;
//   - default: the default of a key only this command uses; without it and
//     without to, the zero value;
//   - oneof: the few values a key only this command reads may take;
//   - flag: the serve flag that sets it;
//   - secret: check prints it masked.
//
// A key's other checks are in the Validate of the package it goes to, or in
// validate for the keys only this command reads (http.admin and alerts in
// ops.go).
type Config struct {
	Listen     string `mapstructure:"listen" default:"inet:127.0.0.1:7357" flag:"listen" help:"milter socket, Postfix notation: inet:HOST:PORT or unix:/path"`
	ListenMode string `mapstructure:"listen_mode" default:"0660" help:"permissions of a unix listen socket (octal)"`
	Mode       string `mapstructure:"mode" to:"Filter.Mode,Admin.Mode" help:"default site mode when Redis key stormguard:mode is unset: enforce, monitor or off"`
	Node       string `mapstructure:"node" to:"Report.Node,Events.Node" help:"node name in events and queue ids; empty: hostname"`
	Log        struct {
		Level  string `mapstructure:"level" default:"info" oneof:"debug,info,warn,error" flag:"log-level" help:"debug, info, warn or error; small-audience decisions are logged at debug"`
		Format string `mapstructure:"format" default:"text" oneof:"text,json" help:"text or json"`
	} `mapstructure:"log"`
	Store struct {
		Backend   string        `mapstructure:"backend" default:"memory" oneof:"memory,redis" to:"Admin.Backend" flag:"backend" help:"memory (one node) or redis (shared by all nodes)"`
		OnError   string        `mapstructure:"on_error" to:"Filter.OnError" help:"when Redis fails: accept (count on this node's memory store) or tempfail"`
		Refresh   time.Duration `mapstructure:"refresh" to:"Filter.Refresh" help:"how often lists, exempt senders and mode are re-read from the store"`
		Retention time.Duration `mapstructure:"retention" to:"Filter.Retention,Admin.Retention" help:"how long thread records and message-id links are kept"`
		// The memory store's bounds (also the fallback's with redis): past
		// either, the least recently active thread is evicted.
		MemoryMaxThreads int   `mapstructure:"memory_max_threads" to:"Memory.MaxThreads" help:"memory store: threads kept at most, the least recently active evicted first; 0: no bound"`
		MemoryMaxBytes   int64 `mapstructure:"memory_max_bytes" to:"Memory.MaxBytes" help:"memory store: estimated bytes kept at most (~1.3 KB a thread); 0: no bound"`
	} `mapstructure:"store"`
	Redis struct {
		Addrs      []string `mapstructure:"addrs" to:"Redis.Addrs" help:"Redis address(es); Sentinel addresses with master_name; seed nodes with cluster"`
		Username   string   `mapstructure:"username" to:"Redis.Username" help:"Redis ACL user"`
		Password   string   `mapstructure:"password" to:"Redis.Password" secret:"true" help:"Redis password"`
		DB         int      `mapstructure:"db" to:"Redis.DB" help:"Redis database number (standalone and Sentinel)"`
		MasterName string   `mapstructure:"master_name" to:"Redis.MasterName" help:"Sentinel master name; set to use Sentinel"`
		Cluster    bool     `mapstructure:"cluster" to:"Redis.Cluster" help:"true for Redis Cluster"`
		TLS        struct { // read by tlsConfig into Redis.TLS
			Enabled    bool   `mapstructure:"enabled" help:"connect to Redis with TLS"`
			CAFile     string `mapstructure:"ca_file" help:"PEM CA bundle to verify Redis with (system roots when empty)"`
			CertFile   string `mapstructure:"cert_file" help:"client certificate (PEM) for mutual TLS"`
			KeyFile    string `mapstructure:"key_file" help:"client key (PEM) for mutual TLS"`
			ServerName string `mapstructure:"server_name" help:"name to verify in Redis's certificate"`
		} `mapstructure:"tls"`
		Timeout time.Duration `mapstructure:"timeout" to:"Redis.Timeout,Filter.StoreTimeout" help:"deadline of every Redis call"`
		Prefix  string        `mapstructure:"prefix" to:"Redis.Prefix" help:"prefix of every Redis key"`
	} `mapstructure:"redis"`
	Policy struct {
		MinAudience          int           `mapstructure:"min_audience" to:"Filter.Policy.MinAudience" help:"a reply counts toward a storm only if its own audience is at least this"`
		MaxReplies           int           `mapstructure:"max_replies" to:"Filter.Policy.Limits.MaxReplies" help:"large-audience replies allowed per thread per window (0 disables the rule)"`
		DeliveryBudget       int64         `mapstructure:"delivery_budget" to:"Filter.Policy.Limits.DeliveryBudget" help:"sum of audiences of the replies allowed per thread per window (0 disables the rule)"`
		Window               time.Duration `mapstructure:"window" to:"Filter.Policy.Limits.Window" help:"sliding window"`
		BlockFor             time.Duration `mapstructure:"block_for" to:"Filter.Policy.Limits.BlockFor" help:"how long a storming thread stays blocked"`
		Action               string        `mapstructure:"action" to:"Filter.Policy.Action" help:"reject (550 5.7.1), tempfail (451 4.7.1), hold (accept into the MTA's hold queue with a reason naming the thread and rule; an auto-reply over its audience is rejected instead) or monitor (accept and add the header)"`
		AutoReplyMaxAudience int           `mapstructure:"auto_reply_max_audience" to:"Filter.Policy.AutoReplyMaxAudience" help:"auto-replies to a larger audience are refused"`
		SplitEnvelopes       bool          `mapstructure:"split_envelopes" to:"Filter.Policy.SplitEnvelopes" help:"count the To/Cc header's audience too: only on nodes behind list expansion whose MTA splits one message to a list into many transactions of a few recipients each (otherwise a forged header would count lists the message never reaches)"`
		ExemptSenders        []string      `mapstructure:"exempt_senders" to:"Filter.Exempt" help:"senders (or @domain) never limited; Redis set stormguard:exempt adds more"`
		RejectText           string        `mapstructure:"reject_text" to:"Filter.RejectText" help:"text of the 550 refusal; {thread} is the thread id"`
		TempfailText         string        `mapstructure:"tempfail_text" to:"Filter.TempfailText" help:"text of the 451 refusal; {thread} is the thread id"`
		Header               string        `mapstructure:"header" to:"Filter.Header" help:"header added in monitor mode"`
	} `mapstructure:"policy"`
	Gate struct {
		MinAudience int      `mapstructure:"min_audience" to:"Filter.Policy.Gate.MinAudience" help:"sender gate: a message to this many mailboxes or more needs an allowed poster or exempt sender; 0: off (e.g. 5000)"`
		Action      string   `mapstructure:"action" to:"Filter.Policy.Gate.Action" help:"for others: reject, tempfail or hold (MTA hold queue)"`
		Posters     []string `mapstructure:"posters" to:"Filter.Posters,Admin.Posters" help:"allowed senders, @domains, SASL logins; Redis set stormguard:posters adds more"`
		RejectText  string   `mapstructure:"reject_text" to:"Filter.GateRejectText" help:"550 text ({list}: the list); 451: 4.x.x"`
	} `mapstructure:"gate"`
	Lists map[string]int `mapstructure:"lists" to:"Filter.Lists,Admin.Lists" help:"list address -> member count; Redis hash stormguard:lists adds more and wins"`
	// Read by listPolicies into Filter.ListPolicies and Admin.ListPolicies.
	ListPolicy map[string]string `mapstructure:"list_policy" help:"list address -> its own policy: \"max_replies=3;action=hold;posters=comms@example.org\" (also delivery_budget, min_audience; unset: the site's); a message to several lists gets the strictest; Redis hash stormguard:listpolicy replaces a list's entry (docs/operations.md#per-list-policy)"`
	ListSync   struct {          // stormguard lists sync; docs/operations.md#list-sizes-from-ldap-and-alias-maps
		Every            time.Duration `mapstructure:"every" help:"serve runs lists sync this often; 0: never"`
		Timeout          time.Duration `mapstructure:"timeout" to:"ListSync.Timeout" help:"deadline of one sync; past it nothing is written"`
		MinMembers       int           `mapstructure:"min_members" to:"ListSync.MinMembers" help:"smaller synced lists are not written"`
		AliasMaps        []string      `mapstructure:"alias_maps" to:"ListSync.AliasMaps" help:"Postfix alias maps (type:path) to count"`
		AliasDomains     []string      `mapstructure:"alias_domains" to:"ListSync.AliasDomains" help:"domains the aliases are lists of"`
		VirtualMaps      []string      `mapstructure:"virtual_maps" to:"ListSync.VirtualMaps" help:"Postfix virtual alias maps (type:path) to count"`
		PostfixConfigDir string        `mapstructure:"postfix_config_dir" to:"ListSync.PostfixConfigDir" help:"postmap -c directory; empty: /etc/postfix"`
		LDAP             struct {
			URL          string `mapstructure:"url" to:"ListSync.LDAP.URL" help:"ldap:// or ldaps:// directory to count groups in"`
			StartTLS     bool   `mapstructure:"starttls" to:"ListSync.LDAP.StartTLS" help:"StartTLS on ldap://"`
			CAFile       string `mapstructure:"ca_file" to:"ListSync.LDAP.CAFile" help:"PEM CA bundle (empty: system roots)"`
			BindDN       string `mapstructure:"bind_dn" to:"ListSync.LDAP.BindDN" help:"bind DN; empty: anonymous"`
			PasswordFile string `mapstructure:"password_file" to:"ListSync.LDAP.PasswordFile" help:"file holding the bind password"`
			BaseDN       string `mapstructure:"base_dn" to:"ListSync.LDAP.BaseDN" help:"subtree to search"`
			Filter       string `mapstructure:"filter" to:"ListSync.LDAP.Filter" help:"filter selecting the groups"`
			MailAttr     string `mapstructure:"mail_attribute" to:"ListSync.LDAP.MailAttr" help:"a group's list address attribute"`
		} `mapstructure:"ldap"`
	} `mapstructure:"listsync"`
	Milter struct {
		MaxSessions int           `mapstructure:"max_sessions" to:"Server.MaxSessions" help:"open milter connections at most (one per SMTP session); beyond it a new one is closed unanswered, logged and counted, and the MTA applies its default action"`
		IdleTimeout time.Duration `mapstructure:"idle_timeout" to:"Server.IdleTimeout" help:"a milter connection silent this long is closed (above Postfix's smtpd_timeout, 300s)"`
	} `mapstructure:"milter"`
	HTTP struct {
		Listen         string        `mapstructure:"listen" default:"127.0.0.1:9357" help:"HOST:PORT of the HTTP server for /metrics, /healthz, /readyz, the admin API /admin/ and the report page /; empty disables it"`
		MaxConnections int           `mapstructure:"max_connections" default:"64" help:"open HTTP connections at most; beyond it a new one is closed"`
		IdleTimeout    time.Duration `mapstructure:"idle_timeout" default:"60s" help:"an idle HTTP keep-alive connection is closed after this long"`
		Admin          adminSetting  `mapstructure:"admin" default:"auto" help:"serve the admin API /admin/ (what the subcommands use with the memory store; every request needs the admin token) and the report page / (it shows subjects and senders; its actions need the token): auto (only when http.listen is a loopback address), true (on any http.listen: firewall it) or false"`
		AdminTokenFile string        `mapstructure:"admin_token_file" default:"/var/lib/stormguard/admin.token" help:"the admin API's token: created (mode 0600) by the daemon at its first start with the admin API on; the subcommands read it, so run them as root or the daemon's user"`
	} `mapstructure:"http"`
	Alerts struct {
		WebhookURL     string        `mapstructure:"webhook_url" to:"Events.WebhookURL" help:"http(s) URL that every event is POSTed to as Slack/Teams-style JSON; empty: none"`
		WebhookTimeout time.Duration `mapstructure:"webhook_timeout" to:"Events.WebhookTimeout" help:"deadline of one webhook POST; a failed POST is retried 3 times with backoff"`
		SummaryEvery   time.Duration `mapstructure:"summary_every" to:"SummaryEvery" help:"blocked replies are reported in one summary event per thread this often"`
		Queue          int           `mapstructure:"queue" to:"Events.Queue" help:"events waiting for Redis or the webhook; when full, new events are dropped and counted"`
	} `mapstructure:"alerts"`
	Report struct {
		History   time.Duration `mapstructure:"history" to:"Report.History" help:"how long storms and near misses are kept"`
		NearMiss  float64       `mapstructure:"near_miss" to:"Report.NearMiss" help:"share of a limit that is a near miss, (0, 1]"`
		MaxStorms int           `mapstructure:"max_storms" to:"Report.MaxStorms" help:"history entries kept at most"`
	} `mapstructure:"report"`
	Notify struct { // mail notices: events/mail.go; docs/operations.md#mail-notices
		To             []string      `mapstructure:"to" to:"Events.Mail.To" help:"admin addresses mailed when a thread storms; empty: no mail"`
		From           string        `mapstructure:"from" to:"Events.Mail.From" help:"sender of the notices; empty: stormguard@HOSTNAME"`
		SMTP           string        `mapstructure:"smtp" to:"Events.Mail.SMTP" help:"HOST:PORT of the MTA the notices go through"`
		Timeout        time.Duration `mapstructure:"timeout" to:"Events.Mail.Timeout" help:"deadline of one SMTP delivery (3 tries)"`
		MaxPerHour     int           `mapstructure:"max_per_hour" to:"Events.Mail.MaxPerHour" help:"notices per hour per node at most; more are dropped and counted"`
		OncePer        time.Duration `mapstructure:"once_per" to:"Events.Mail.OncePer" help:"one notice per thread per this, site-wide with Redis; 0: policy.block_for"`
		OriginalSender bool          `mapstructure:"original_sender" to:"Events.Mail.OriginalSender" help:"also mail the thread's original sender"`
		GateHolds      bool          `mapstructure:"gate_holds" to:"Events.Mail.GateHolds" help:"also mail a notice for each message the sender gate holds"`
	} `mapstructure:"notify"`
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

// defaultPlain is what the packages say when nothing is configured: the
// defaults of every key with a to tag.
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

// plain maps c into the packages' configs: every key into the fields its
// to tag names, then what no key sets.
func (c *Config) plain() plain {
	p := defaultPlain()
	setPlain(c, &p)
	if c.Redis.TLS.Enabled {
		p.Redis.TLS, _ = c.tlsConfig() // validated in validate
	}
	p.Events.PublishTimeout = max(c.Redis.Timeout, time.Second)
	p.Filter.ListPolicies, _ = c.listPolicies() // validated in validate
	p.Admin.ListPolicies = p.Filter.ListPolicies
	p.Admin.Policy = p.Filter.Policy
	if p.Report.Node == "" {
		p.Report.Node = hostname()
	}
	p.Events.Node = p.Report.Node // one name for the node everywhere
	p.Report.Retention = p.Filter.Retention
	p.Report.Limits = p.Filter.Policy.Limits
	p.Report.Timeout = max(c.Redis.Timeout, time.Second) // off the mail path
	if p.Events.Mail.OncePer == 0 {
		p.Events.Mail.OncePer = p.Filter.Policy.Limits.BlockFor
	}
	p.Events.Mail.ReportURL = c.reportURL()
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

// Load reads defaults, the config file at path (DefaultFile if path is
// empty and that file exists), STORMGUARD_* environment variables and the
// flags AddFlags declared on flags (nil for none), in viper's order (flags
// win), and validates the result. Its errors are one line naming the key.
func Load(path string, flags *pflag.FlagSet) (*Config, error) {
	cfg, _, err := loadConfig(path, path != "", flags)
	return cfg, err
}

// loadConfig is Load, also returning the viper it read with; with explicit
// false, a missing file at path is no error.
func loadConfig(path string, explicit bool, flags *pflag.FlagSet) (*Config, *viper.Viper, error) {
	v := newViper()
	if path == "" {
		path = DefaultFile
	}
	if _, err := os.Stat(path); err == nil || explicit {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := bindFlags(v, flags); err != nil {
		return nil, nil, err
	}
	var cfg Config
	if err := v.Unmarshal(&cfg, decoderOptions); err != nil {
		return nil, nil, fmt.Errorf("config: %s", admin.OneLine(errors.New(describeDecodeError(err))))
	}
	if err := cfg.validate(); err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	return &cfg, v, nil
}

// validate checks what the keys' oneof tags say, the keys only this command
// reads, and the packages' configs with their own Validate.
func (c *Config) validate() error {
	if err := checkOneOf(c); err != nil {
		return err
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
	if _, err := c.listPolicies(); err != nil {
		return err
	}
	if c.Policy.Header == "" || strings.ContainsAny(c.Policy.Header, ": \t\r\n") {
		return fmt.Errorf("policy.header: %q is not a header name", c.Policy.Header)
	}
	return c.FilterConfig().Validate()
}

// listPolicies reads list_policy, naming the list of each mistake.
func (c *Config) listPolicies() (map[string]policy.ListPolicy, error) {
	if len(c.ListPolicy) == 0 {
		return nil, nil
	}
	out := make(map[string]policy.ListPolicy, len(c.ListPolicy))
	var errs []string
	for addr, text := range c.ListPolicy {
		p, err := policy.ParseListPolicy(text)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %s", addr, strings.ReplaceAll(err.Error(), "\n", "; ")))
			continue
		}
		out[strings.ToLower(strings.TrimSpace(addr))] = p
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		return out, fmt.Errorf("list_policy: %s", strings.Join(errs, "; "))
	}
	return out, nil
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
