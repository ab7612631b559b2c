package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/stormguard/stormguard/policy"
)

// key is one configuration key: its name in the file (sections joined by
// "."), what it means, and the field of Config it sets. Its environment
// variable is STORMGUARD_ and the name upper case, "." as "_".
type key struct {
	name   string                // policy.window
	val    func(c *Config) value // the field it sets in c
	help   string                // what it means: docs/configuration.md, serve's flag
	flag   string                // serve's flag that sets it, if any
	oneOf  []string              // the values it may take, when only a few
	secret bool                  // check masks it
}

// env is k's environment variable.
func (k key) env() string {
	return "STORMGUARD_" + strings.ToUpper(strings.ReplaceAll(k.name, ".", "_"))
}

// keys are every key, in the order docs/configuration.md and check list
// them. The limit rules' keys come from policy.LimitRules.
var keys = slices.Concat([]key{
	{name: "listen", val: func(c *Config) value { return scalar(&c.Listen) }, flag: "listen",
		help: "milter socket, Postfix notation: inet:HOST:PORT or unix:/path"},
	{name: "listen_mode", val: func(c *Config) value { return scalar(&c.ListenMode) },
		help: "permissions of a unix listen socket (octal)"},
	{name: "mode", val: func(c *Config) value { return scalar(&c.Mode) },
		help: "default site mode when Redis key stormguard:mode is unset: enforce, monitor or off"},
	{name: "node", val: func(c *Config) value { return scalar(&c.Node) },
		help: "node name in events and queue ids; empty: hostname"},
	{name: "log.level", val: func(c *Config) value { return scalar(&c.Log.Level) }, flag: "log-level", oneOf: []string{"debug", "info", "warn", "error"},
		help: "debug, info, warn or error; small-audience decisions are logged at debug"},
	{name: "log.format", val: func(c *Config) value { return scalar(&c.Log.Format) }, oneOf: []string{"text", "json"},
		help: "text or json"},
	{name: "store.backend", val: func(c *Config) value { return scalar(&c.Store.Backend) }, flag: "backend", oneOf: []string{"memory", "redis"},
		help: "memory (one node) or redis (shared by all nodes)"},
	{name: "store.on_error", val: func(c *Config) value { return scalar(&c.Store.OnError) },
		help: "when Redis fails: accept (count on this node's memory store) or tempfail"},
	{name: "store.budget", val: func(c *Config) value { return scalar(&c.Store.Budget) },
		help: "the most a message's store calls may take: a failed call is tried again once if half a redis.timeout of it is left (no retry below 1.5 redis.timeout), and only then does store.on_error apply; the MTA waits up to this long at end of headers while Redis is slow"},
	{name: "store.refresh", val: func(c *Config) value { return scalar(&c.Store.Refresh) },
		help: "how often lists, exempt senders and mode are re-read from the store"},
	{name: "store.retention", val: func(c *Config) value { return scalar(&c.Store.Retention) },
		help: "how long thread records and message-id links are kept"},
	{name: "store.memory_max_threads", val: func(c *Config) value { return scalar(&c.Store.MemoryMaxThreads) },
		help: "memory store: threads kept at most, the least recently active evicted first; 0: no bound"},
	{name: "store.memory_max_bytes", val: func(c *Config) value { return scalar(&c.Store.MemoryMaxBytes) },
		help: "memory store: estimated bytes kept at most (~1.3 KB a thread); 0: no bound"},
	{name: "redis.addrs", val: func(c *Config) value { return list(&c.Redis.Addrs) },
		help: "Redis address(es); Sentinel addresses with master_name; seed nodes with cluster"},
	{name: "redis.username", val: func(c *Config) value { return scalar(&c.Redis.Username) },
		help: "Redis ACL user"},
	{name: "redis.password", val: func(c *Config) value { return scalar(&c.Redis.Password) }, secret: true,
		help: "Redis password"},
	{name: "redis.db", val: func(c *Config) value { return scalar(&c.Redis.DB) },
		help: "Redis database number (standalone and Sentinel)"},
	{name: "redis.master_name", val: func(c *Config) value { return scalar(&c.Redis.MasterName) },
		help: "Sentinel master name; set to use Sentinel"},
	{name: "redis.cluster", val: func(c *Config) value { return scalar(&c.Redis.Cluster) },
		help: "true for Redis Cluster"},
	{name: "redis.tls.enabled", val: func(c *Config) value { return scalar(&c.Redis.TLS.Enabled) },
		help: "connect to Redis with TLS"},
	{name: "redis.tls.ca_file", val: func(c *Config) value { return scalar(&c.Redis.TLS.CAFile) },
		help: "PEM CA bundle to verify Redis with (system roots when empty)"},
	{name: "redis.tls.cert_file", val: func(c *Config) value { return scalar(&c.Redis.TLS.CertFile) },
		help: "client certificate (PEM) for mutual TLS"},
	{name: "redis.tls.key_file", val: func(c *Config) value { return scalar(&c.Redis.TLS.KeyFile) },
		help: "client key (PEM) for mutual TLS"},
	{name: "redis.tls.server_name", val: func(c *Config) value { return scalar(&c.Redis.TLS.ServerName) },
		help: "name to verify in Redis's certificate"},
	{name: "redis.timeout", val: func(c *Config) value { return scalar(&c.Redis.Timeout) },
		help: "deadline of every Redis call"},
	{name: "redis.prefix", val: func(c *Config) value { return scalar(&c.Redis.Prefix) },
		help: "prefix of every Redis key"},
	{name: "redis.wait_replicas", val: func(c *Config) value { return scalar(&c.Redis.WaitReplicas) },
		help: "replicas each large-audience record waits for (WAIT, on its connection) so that a failover cannot lose it; one not acknowledged within redis.wait_timeout counts as a failed store call (retry, then store.on_error); 0: no wait"},
	{name: "redis.wait_timeout", val: func(c *Config) value { return scalar(&c.Redis.WaitTimeout) },
		help: "with redis.wait_replicas: how long a record waits for its replicas; below redis.timeout"},
	{name: "policy.min_audience", val: func(c *Config) value { return scalar(&c.Policy.MinAudience) },
		help: "a reply counts toward a storm only if its own audience is at least this"},
}, limitKeys(), []key{
	{name: "policy.window", val: func(c *Config) value { return scalar(&c.Policy.Limits.Window) },
		help: "sliding window"},
	{name: "policy.block_for", val: func(c *Config) value { return scalar(&c.Policy.Limits.BlockFor) },
		help: "how long a storming thread stays blocked"},
	{name: "policy.action", val: func(c *Config) value { return scalar(&c.Policy.Action) },
		help: "reject (550 5.7.1), tempfail (451 4.7.1), hold (accept into the MTA's hold queue with a reason naming the thread and rule; an auto-reply over its audience is rejected instead) or monitor (accept and add the header)"},
	{name: "policy.auto_reply_max_audience", val: func(c *Config) value { return scalar(&c.Policy.AutoReplyMaxAudience) },
		help: "auto-replies to a larger audience are refused"},
	{name: "policy.split_envelopes", val: func(c *Config) value { return scalar(&c.Policy.SplitEnvelopes) },
		help: "count the To/Cc header's audience too: only on nodes behind list expansion whose MTA splits one message to a list into many transactions of a few recipients each (otherwise a forged header would count lists the message never reaches)"},
	{name: "policy.recipient_delimiter", val: func(c *Config) value { return scalar(&c.Policy.RecipientDelimiter) },
		help: "the MTA's recipient_delimiter: each character starts an address extension, so list+x@domain is the list; empty: none"},
	{name: "policy.local_domains", val: func(c *Config) value { return list(&c.Policy.LocalDomains) },
		help: "the site's own domains, the MTA's $myorigin first: a bare RCPT TO:<name> is the list name@ the first that has one; empty: the registered lists' domains"},
	{name: "policy.exempt_senders", val: func(c *Config) value { return list(&c.Policy.ExemptSenders) },
		help: "senders (or @domain) never limited; Redis set stormguard:exempt adds more"},
	{name: "policy.sender_auth", val: func(c *Config) value { return scalar(&c.Policy.SenderAuth) },
		help: "exempt senders and posters (policy.exempt_senders, gate.posters, list_policy posters, the Redis sets) given as an address or @domain count only for an SMTP client that authenticated (SASL) or connects from policy.trusted_networks; false: the envelope sender alone, which anyone can forge (SASL login entries need the login either way)"},
	{name: "policy.trusted_networks", val: func(c *Config) value { return list(&c.Policy.TrustedNetworks) },
		help: "with policy.sender_auth: the SMTP client networks (the MTA's {client_addr}) whose envelope senders are taken as said, e.g. your mynetworks"},
	{name: "policy.reject_text", val: func(c *Config) value { return scalar(&c.Policy.RejectText) },
		help: "text of the 550 refusal; {thread} is the thread id"},
	{name: "policy.tempfail_text", val: func(c *Config) value { return scalar(&c.Policy.TempfailText) },
		help: "text of the 451 refusal; {thread} is the thread id"},
	{name: "policy.header", val: func(c *Config) value { return scalar(&c.Policy.Header) },
		help: "header added in monitor mode"},
	{name: "gate.min_audience", val: func(c *Config) value { return scalar(&c.Gate.MinAudience) },
		help: "sender gate: a message to this many mailboxes or more needs an allowed poster or exempt sender; 0: off (e.g. 5000)"},
	{name: "gate.action", val: func(c *Config) value { return scalar(&c.Gate.Action) },
		help: "for others: reject, tempfail or hold (MTA hold queue)"},
	{name: "gate.posters", val: func(c *Config) value { return list(&c.Gate.Posters) },
		help: "allowed senders, @domains, SASL logins; Redis set stormguard:posters adds more"},
	{name: "gate.reject_text", val: func(c *Config) value { return scalar(&c.Gate.RejectText) },
		help: "550 text ({list}: the list); 451: 4.x.x"},
	{name: "lists", val: func(c *Config) value { return sizes(&c.Lists) },
		help: "list address -> member count; Redis hash stormguard:lists adds more and wins"},
	{name: "list_policy", val: func(c *Config) value { return policies(&c.ListPolicy) },
		help: "list address -> its own policy, a section of " + strings.Join(policy.ListPolicyKeys(), ", ") +
			" (unset: the site's), e.g. {max_replies: 3, action: hold, posters: [comms@example.org]}; a message to several lists gets the strictest; Redis hash stormguard:listpolicy replaces a list's entry (docs/operations.md#per-list-policy)"},
	{name: "listsync.every", val: func(c *Config) value { return scalar(&c.ListSync.Every) },
		help: "serve runs lists sync this often; 0: never"},
	{name: "listsync.timeout", val: func(c *Config) value { return scalar(&c.ListSync.Timeout) },
		help: "deadline of one sync; past it nothing is written"},
	{name: "listsync.min_members", val: func(c *Config) value { return scalar(&c.ListSync.MinMembers) },
		help: "smaller synced lists are not written"},
	{name: "listsync.alias_maps", val: func(c *Config) value { return list(&c.ListSync.AliasMaps) },
		help: "Postfix alias maps (type:path) to count"},
	{name: "listsync.alias_domains", val: func(c *Config) value { return list(&c.ListSync.AliasDomains) },
		help: "domains the aliases are lists of"},
	{name: "listsync.virtual_maps", val: func(c *Config) value { return list(&c.ListSync.VirtualMaps) },
		help: "Postfix virtual alias maps (type:path) to count"},
	{name: "listsync.postfix_config_dir", val: func(c *Config) value { return scalar(&c.ListSync.PostfixConfigDir) },
		help: "postmap -c directory; empty: /etc/postfix"},
	{name: "listsync.ldap.url", val: func(c *Config) value { return scalar(&c.ListSync.LDAP.URL) },
		help: "ldap:// or ldaps:// directory to count groups in"},
	{name: "listsync.ldap.starttls", val: func(c *Config) value { return scalar(&c.ListSync.LDAP.StartTLS) },
		help: "StartTLS on ldap://"},
	{name: "listsync.ldap.ca_file", val: func(c *Config) value { return scalar(&c.ListSync.LDAP.CAFile) },
		help: "PEM CA bundle (empty: system roots)"},
	{name: "listsync.ldap.bind_dn", val: func(c *Config) value { return scalar(&c.ListSync.LDAP.BindDN) },
		help: "bind DN; empty: anonymous"},
	{name: "listsync.ldap.password_file", val: func(c *Config) value { return scalar(&c.ListSync.LDAP.PasswordFile) },
		help: "file holding the bind password"},
	{name: "listsync.ldap.base_dn", val: func(c *Config) value { return scalar(&c.ListSync.LDAP.BaseDN) },
		help: "subtree to search"},
	{name: "listsync.ldap.filter", val: func(c *Config) value { return scalar(&c.ListSync.LDAP.Filter) },
		help: "filter selecting the groups"},
	{name: "listsync.ldap.mail_attribute", val: func(c *Config) value { return scalar(&c.ListSync.LDAP.MailAttr) },
		help: "a group's list address attribute"},
	{name: "milter.max_sessions", val: func(c *Config) value { return scalar(&c.Milter.MaxSessions) },
		help: "open milter connections at most (one per SMTP session); beyond it a new one is closed unanswered, logged and counted, and the MTA applies its default action"},
	{name: "milter.idle_timeout", val: func(c *Config) value { return scalar(&c.Milter.IdleTimeout) },
		help: "a milter connection silent this long is closed (above Postfix's smtpd_timeout, 300s)"},
	{name: "http.listen", val: func(c *Config) value { return scalar(&c.HTTP.Listen) },
		help: "HOST:PORT of the HTTP server for /metrics, /healthz, /readyz, the admin API /admin/ and the report page /; empty disables it"},
	{name: "http.max_connections", val: func(c *Config) value { return scalar(&c.HTTP.MaxConnections) },
		help: "open HTTP connections at most; beyond it a new one is closed"},
	{name: "http.max_connections_per_client", val: func(c *Config) value { return scalar(&c.HTTP.MaxConnectionsPerClient) },
		help: "open HTTP connections from one client address at most, so that one client cannot take every connection from /healthz and /metrics; beyond it the client's new one is closed"},
	{name: "http.read_header_timeout", val: func(c *Config) value { return scalar(&c.HTTP.ReadHeaderTimeout) },
		help: "a connection that has not sent a whole request header this long after it opened (or after its last response) is closed"},
	{name: "http.idle_timeout", val: func(c *Config) value { return scalar(&c.HTTP.IdleTimeout) },
		help: "an idle HTTP keep-alive connection is closed after this long"},
	{name: "http.admin", val: func(c *Config) value { return scalar(&c.HTTP.Admin) },
		help: "serve the admin API /admin/ (what the subcommands use with the memory store; every request needs the admin token) and the report page / (it shows subjects and senders; its actions need the token): auto (only when http.listen is a loopback address), true (on any http.listen: firewall it) or false"},
	{name: "http.admin_token_file", val: func(c *Config) value { return scalar(&c.HTTP.AdminTokenFile) },
		help: "the admin API's token: created (mode 0600) by the daemon at its first start with the admin API on; the subcommands read it, so run them as root or the daemon's user"},
	{name: "alerts.webhook_url", val: func(c *Config) value { return scalar(&c.Alerts.WebhookURL) },
		help: "http(s) URL that every event is POSTed to as Slack/Teams-style JSON; empty: none"},
	{name: "alerts.webhook_timeout", val: func(c *Config) value { return scalar(&c.Alerts.WebhookTimeout) },
		help: "deadline of one webhook POST; a failed POST is retried 3 times with backoff"},
	{name: "alerts.summary_every", val: func(c *Config) value { return scalar(&c.Alerts.SummaryEvery) },
		help: "blocked replies are reported in one summary event per thread this often"},
	{name: "alerts.queue", val: func(c *Config) value { return scalar(&c.Alerts.Queue) },
		help: "events waiting for Redis or the webhook; when full, new events are dropped and counted"},
	{name: "report.history", val: func(c *Config) value { return scalar(&c.Report.History) },
		help: "how long storms and near misses are kept"},
	{name: "report.near_miss", val: func(c *Config) value { return scalar(&c.Report.NearMiss) },
		help: "share of a limit that is a near miss, (0, 1]"},
	{name: "report.max_storms", val: func(c *Config) value { return scalar(&c.Report.MaxStorms) },
		help: "history entries kept at most"},
	{name: "notify.to", val: func(c *Config) value { return list(&c.Notify.To) },
		help: "admin addresses mailed when a thread storms; empty: no mail"},
	{name: "notify.from", val: func(c *Config) value { return scalar(&c.Notify.From) },
		help: "sender of the notices; empty: stormguard@HOSTNAME"},
	{name: "notify.smtp", val: func(c *Config) value { return scalar(&c.Notify.SMTP) },
		help: "HOST:PORT of the MTA the notices go through"},
	{name: "notify.timeout", val: func(c *Config) value { return scalar(&c.Notify.Timeout) },
		help: "deadline of one SMTP delivery (3 tries)"},
	{name: "notify.max_per_hour", val: func(c *Config) value { return scalar(&c.Notify.MaxPerHour) },
		help: "storm notices per hour per node at most; more are dropped and counted"},
	{name: "notify.once_per", val: func(c *Config) value { return scalar(&c.Notify.OncePer) },
		help: "one notice per thread per this, site-wide with Redis; 0: policy.block_for"},
	{name: "notify.original_sender", val: func(c *Config) value { return scalar(&c.Notify.OriginalSender) },
		help: "also mail the thread's original sender"},
	{name: "notify.gate_holds", val: func(c *Config) value { return scalar(&c.Notify.GateHolds) },
		help: "also mail a notice for each message the sender gate holds"},
	{name: "notify.gate_holds_per_hour", val: func(c *Config) value { return scalar(&c.Notify.GateHoldsPerHour) },
		help: "gate-hold notices per hour per node at most, a budget apart from the storm notices'; more are dropped and counted"},
})

// limitKeys are policy.max_replies and the other limit rules' keys.
func limitKeys() []key {
	out := make([]key, len(policy.LimitRules))
	for i, r := range policy.LimitRules {
		out[i] = key{name: "policy." + r.Key, val: func(c *Config) value { return limitValue{r, &c.Policy.Limits} }, help: r.Help}
	}
	return out
}

// keyNamed returns the key called name.
func keyNamed(name string) (key, bool) {
	i := slices.IndexFunc(keys, func(k key) bool { return k.name == name })
	if i < 0 {
		return key{}, false
	}
	return keys[i], true
}

// isSection reports whether name is a section of keys ("policy",
// "redis.tls").
func isSection(name string) bool {
	return slices.ContainsFunc(keys, func(k key) bool { return strings.HasPrefix(k.name, name+".") })
}

// checkOneOf reports the first key whose value is not one its oneOf lists.
func checkOneOf(c *Config) error {
	for _, k := range keys {
		if k.oneOf == nil {
			continue
		}
		if v := k.val(c).String(); !slices.Contains(k.oneOf, v) {
			return fmt.Errorf("%s: %q is not %s", k.name, v, orList(k.oneOf))
		}
	}
	return nil
}

// orList writes a, b or c.
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// AddFlags declares on fs serve's flags that set keys, for Load to read.
func AddFlags(fs *pflag.FlagSet) {
	for _, k := range keys {
		if k.flag != "" {
			fs.String(k.flag, "", k.help)
		}
	}
}
