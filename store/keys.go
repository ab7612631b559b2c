package store

import (
	"strconv"
	"strings"

	"github.com/stormguard/stormguard/policy"
)

// Every Redis key name stormguard uses is built here, and only here. With
// the default prefix:
//
//	stormguard:{T}:replies   zset    a thread's counted replies in the window (record.lua)
//	stormguard:{T}:meta      hash    its record: subject, sender, times, counters
//	stormguard:{T}:block     string  the rule that blocked it, with the block's TTL
//	stormguard:{T}:override  string  "allow" or "block", set by operators
//	stormguard:{T}:senders   hash    sender -> the status of its last message
//	stormguard:{T}:queued    list    JSON queue ids (history.QueueRef) of the messages let through or held, for store.retention (history/redis.go)
//	stormguard:{T}:notified  string  the node that mails thread T's storm notice, for notify.once_per (store/notice.go)
//	stormguard:{T}:history   hash    history entry (history.Entry) of a storm or near miss, as JSON summary and detail, until last seen + report.history
//	stormguard:link:{I}      string  identity hash I -> its thread
//	stormguard:threads:{S}   zset    thread -> last seen (ms), for listings: shard S of ThreadShards
//	stormguard:storms        zset    thread -> until when it is of interest (ms): stormed, blocked or overridden
//	stormguard:history       zset    thread -> last seen (ms) of its history entry: the report's index (history/redis.go)
//	stormguard:lists         hash    list address -> members (operators)
//	stormguard:listpolicy    hash    list address -> its own policy, {"max_replies":3,"posters":["comms@example.org"]} (operators; policy.ParseListPolicy)
//	stormguard:exempt        set     exempt senders and @domains (operators)
//	stormguard:posters       set     senders, @domains and SASL logins allowed past the sender gate (operators)
//	stormguard:mode          string  site mode (operators)
//	stormguard:nodes         zset    node name -> until when its heartbeat holds (ms): the nodes sharing the store (store/nodes.go)
//	stormguard:events        pub/sub channel of events
//
// A thread's keys share the thread id as their Cluster hash tag, so that
// record.lua and Reset touch one slot; a link key is tagged by its own
// identity hash.

// Keys builds the Redis key names under one prefix.
type Keys struct{ prefix string }

// NewKeys returns the key names under prefix; "" means DefaultPrefix. The
// prefix must pass RedisConfig.Validate (no braces or spaces).
func NewKeys(prefix string) Keys {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return Keys{prefix: prefix}
}

// Prefix is the prefix every key starts with.
func (k Keys) Prefix() string { return k.prefix }

// Indexes into Thread's keys: record.lua's KEYS[1..5], in order.
const (
	keyReplies = iota
	keyMeta
	keyBlock
	keyOverride
	keySenders
	numThreadKeys
)

// threadKeyNames are the suffixes of a thread's keys, in record.lua's
// KEYS order (its contract header names them the same way; a test
// compares the two).
var threadKeyNames = [numThreadKeys]string{
	keyReplies:  "replies",
	keyMeta:     "meta",
	keyBlock:    "block",
	keyOverride: "override",
	keySenders:  "senders",
}

func (k Keys) tag(t policy.ThreadID) string { return k.prefix + "{" + string(t) + "}:" }

// Thread returns a thread's five keys in record.lua's KEYS order: replies,
// meta, block, override, senders.
func (k Keys) Thread(t policy.ThreadID) []string {
	tag := k.tag(t)
	keys := make([]string, numThreadKeys)
	for i, name := range threadKeyNames {
		keys[i] = tag + name
	}
	return keys
}

// Replies is a thread's window of counted replies.
func (k Keys) Replies(t policy.ThreadID) string { return k.tag(t) + threadKeyNames[keyReplies] }

// Meta is a thread's record (subject, sender, times, counters).
func (k Keys) Meta(t policy.ThreadID) string { return k.tag(t) + threadKeyNames[keyMeta] }

// Block holds the rule that blocked a thread, for the block's TTL.
func (k Keys) Block(t policy.ThreadID) string { return k.tag(t) + threadKeyNames[keyBlock] }

// Override is an operator's override of a thread.
func (k Keys) Override(t policy.ThreadID) string { return k.tag(t) + threadKeyNames[keyOverride] }

// Senders maps each sender in a thread to the status of its last message.
func (k Keys) Senders(t policy.ThreadID) string { return k.tag(t) + threadKeyNames[keySenders] }

// Link is an identity's link to its thread.
func (k Keys) Link(id policy.Key) string { return k.prefix + "link:{" + string(id) + "}" }

// ThreadShards is how many keys the index of recently seen threads is
// spread over: each is its own Cluster slot, so that on a Cluster no one
// master takes every node's index writes (store/list.go).
const ThreadShards = 16

// ThreadShard is the shard of the thread index that t is listed in: FNV-1a
// of the thread id, modulo ThreadShards.
func ThreadShard(t policy.ThreadID) int {
	h := uint32(2166136261)
	for i := range len(t) {
		h = (h ^ uint32(t[i])) * 16777619
	}
	return int(h % ThreadShards)
}

// Threads is shard i (0 <= i < ThreadShards) of the index of recently
// seen threads; its shard number is its Cluster hash tag.
func (k Keys) Threads(i int) string { return k.prefix + "threads:{" + strconv.Itoa(i) + "}" }

// ThreadIndex is every shard of the thread index, in shard order.
func (k Keys) ThreadIndex() []string {
	out := make([]string, ThreadShards)
	for i := range out {
		out[i] = k.Threads(i)
	}
	return out
}

// Storms is the index of the threads storms lists: those that crossed a
// limit or carry an operator's override, scored by the time (ms) until
// which they are of interest (store/list.go). Written only when a thread
// crosses a limit or an operator overrides it: rare, so one key.
func (k Keys) Storms() string { return k.prefix + "storms" }

// Blocked is the index of the blocked threads, scored by the time (ms)
// until which each is blocked (+inf: an override without expiry), that the
// daemon's gauge counts (store/blocked.go). Written only when a thread
// crosses a limit or an operator overrides or resets it: rare, so one key.
func (k Keys) Blocked() string { return k.prefix + "blocked" }

// Queued lists the queue ids (JSON history.QueueRef, oldest first) of the
// messages the nodes let through or held in thread t (history.Redis).
func (k Keys) Queued(t policy.ThreadID) string { return k.tag(t) + "queued" }

// Notified is held, for notify.once_per, by the node that mails thread
// t's storm notice, so that the site sends one.
func (k Keys) Notified(t policy.ThreadID) string { return k.tag(t) + "notified" }

// HistoryEntry is thread t's history entry (history.Entry, history.Redis).
func (k Keys) HistoryEntry(t policy.ThreadID) string { return k.tag(t) + "history" }

// History is the index of the history entries, scored by their last seen
// (ms). Written when a storm or near miss is saved: rare, so one key.
func (k Keys) History() string { return k.prefix + "history" }

// Lists maps list addresses to their member counts.
func (k Keys) Lists() string { return k.prefix + "lists" }

// ListPolicy maps list addresses to their own policies, JSON objects as
// policy.ListPolicy.String writes them (policy.ParseListPolicy also reads
// the older text form; one key, read with the globals).
func (k Keys) ListPolicy() string { return k.prefix + "listpolicy" }

// Exempt is the set of exempt senders and @domains.
func (k Keys) Exempt() string { return k.prefix + "exempt" }

// Posters is the set of senders, @domains and SASL logins allowed to post
// to the audiences the sender gate guards (gate.min_audience).
func (k Keys) Posters() string { return k.prefix + "posters" }

// Mode is the site-wide mode.
func (k Keys) Mode() string { return k.prefix + "mode" }

// Nodes is the nodes' heartbeats (Redis.Heartbeat).
func (k Keys) Nodes() string { return k.prefix + "nodes" }

// Events is the pub/sub channel events are published on.
func (k Keys) Events() string { return k.prefix + "events" }

// Unexpiring are the keys written without a TTL: the ones left behind
// until someone deletes them.
func (k Keys) Unexpiring() []string {
	return append(k.ThreadIndex(), k.Storms(), k.Blocked(), k.History(), k.Lists(), k.ListPolicy(), k.Exempt(), k.Posters(), k.Mode())
}

// Pattern is a SCAN MATCH pattern for every key under the prefix (glob
// characters in the prefix escaped).
func (k Keys) Pattern() string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`).Replace(k.prefix) + "*"
}
