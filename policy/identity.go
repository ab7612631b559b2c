package policy

import (
	"slices"
	"strings"
)

// Source says which identity of a message gave its thread.
type Source string

const (
	SourceAncestor    Source = "ancestor"     // a References or In-Reply-To id linked to a thread: the nearest such
	SourceReferences  Source = "references"   // References' first id, when no ancestor is known
	SourceInReplyTo   Source = "in-reply-to"  // In-Reply-To's id, when the message has no References and no ancestor is known
	SourceThreadIndex Source = "thread-index" // Outlook's conversation GUID
	SourceSubject     Source = "subject"      // reply subject and list recipients
	SourceNew         Source = "new"          // none known: the message starts a thread
)

// maxReportRunes caps Identity.Subject.
const maxReportRunes = 200

// maxParents bounds the In-Reply-To ids a message looks up (its last
// ones): a parent is one id, and a few clients add a second.
const maxParents = 3

// MaxLookup bounds Identity.Lookup: maxParents In-Reply-To ids, the ids
// ParseIDList keeps of References, the Thread-Index GUID and the subject
// key. It is the most link reads one message can cost.
const MaxLookup = maxParents + maxIDs + 2

// Identity is everything policy can tell about a message's conversation
// from its headers alone. The caller resolves Lookup through the stored
// links (Store.Resolve), passes the answer to Resolve, and records Links
// against the thread Resolve picked.
type Identity struct {
	Own Key // MessageIDKey of its own Message-ID ("" if none)
	// Lookup are the keys to resolve through stored links, in the order
	// Resolve prefers them: the ancestors (In-Reply-To's ids, then
	// References' ids, each nearest first: last to first), then the
	// Thread-Index GUID key, then, for a reply that names no ancestor,
	// the subject key. At most MaxLookup, none repeated, never Own.
	Lookup  []Key
	Sources []Source // what each Lookup key is, aligned with Lookup
	// Root names the thread when no Lookup key is linked to one:
	// References' first id, else In-Reply-To's last; "" without either.
	Root     Key
	RootFrom Source // SourceReferences or SourceInReplyTo
	Links    []Key  // identities this message links to its thread: Own, GUID key, subject key (non-empty ones, no duplicates)
	Reply    bool   // threading headers or a reply prefix
	Subject  string // normalised base subject for reports, at most 200 runes
	Display  string // the subject as people wrote it, decoded and made one safe line, at most 200 runes
}

// Identify works out a message's identities from its parsed headers. lists
// are the large-audience recipients: the registered list addresses among the
// message's recipients (Audience's second result).
//
// The keys:
//   - message-id keys hash the id as Parse (ParseMessageID, ParseIDList)
//     normalises it, so an id seen in References or In-Reply-To finds the
//     message that carried it as Message-ID;
//   - the Thread-Index key hashes the conversation GUID (ThreadIndexGUID);
//   - the subject key hashes the base subject (NormalizeSubject) together
//     with the sorted, distinct list addresses. It exists only when both are
//     non-empty: without a list among the recipients nothing tells a
//     reply-all from an unrelated message that happens to share a subject
//     ("Re: Lunch?"), and such messages are not storms anyway.
//
// A message is a reply when Message.IsReply says so: an In-Reply-To or
// References id, an Outlook Thread-Index with child blocks, or a reply
// prefix on its subject. Only replies look anything up. Every message,
// replies and originals alike, links its own identities, so that later
// replies naming any of them find its thread.
//
// Clients disagree on what they keep (the design's client table): iPhone
// Mail names only the parent, RainLoop writes References newest first,
// Mutt keeps the last ten ids, and a reply to a message that had only
// In-Reply-To starts its References with that message's parent. Each of
// them names at least one ancestor that stormguard recorded, which is why
// every ancestor is looked up and not only References' first id.
func Identify(m Message, lists []string) Identity {
	var id Identity
	if m.MessageID != "" {
		id.Own = MessageIDKey(m.MessageID)
	}
	id.Subject = cutRunes(m.Subject.Base, maxReportRunes)
	id.Display = m.Subject.Display
	subjectKey := SubjectKey(m.Subject.Base, lists)
	var guidKey Key
	if m.ThreadIndex.GUID != "" {
		guidKey = makeKey(kindThreadIndex, m.ThreadIndex.GUID)
	}
	id.Reply = m.IsReply()

	// Each id's key once. A message cannot answer itself: its own id is
	// skipped wherever it appears in its threading headers.
	var irtBuf, refBuf [maxIDs]Key
	irt, refs := keysOf(irtBuf[:0], m.InReplyTo, id.Own), keysOf(refBuf[:0], m.References, id.Own)
	switch {
	case len(refs) > 0:
		id.Root, id.RootFrom = refs[0], SourceReferences
	case len(irt) > 0:
		id.Root, id.RootFrom = irt[len(irt)-1], SourceInReplyTo
	}
	if id.Reply {
		add := func(k Key, s Source) {
			if k != "" && !slices.Contains(id.Lookup, k) {
				id.Lookup = append(id.Lookup, k)
				id.Sources = append(id.Sources, s)
			}
		}
		for i, n := len(irt)-1, 0; i >= 0 && n < maxParents; i, n = i-1, n+1 {
			add(irt[i], SourceAncestor)
		}
		for i := len(refs) - 1; i >= 0; i-- {
			add(refs[i], SourceAncestor)
		}
		ancestors := len(id.Lookup) > 0
		add(guidKey, SourceThreadIndex)
		if !ancestors {
			// A reply that names ancestors is not threaded by its
			// subject: when none of them is known, its root names the
			// thread, and the same subject on the same list may be
			// another conversation (a storm blocked yesterday, a second
			// "[PATCH] fix the build").
			add(subjectKey, SourceSubject)
		}
	}
	for _, k := range []Key{id.Own, guidKey, subjectKey} {
		if k != "" && !slices.Contains(id.Links, k) {
			id.Links = append(id.Links, k)
		}
	}
	return id
}

// keysOf appends to buf the message-id key of each id but own.
func keysOf(buf []Key, ids []string, own Key) []Key {
	for _, s := range ids {
		if k := MessageIDKey(s); k != own {
			buf = append(buf, k)
		}
	}
	return buf
}

// SubjectKey is the key of a base subject (as NormalizeSubject returns it)
// sent to a set of list addresses: "" unless both are non-empty. The
// addresses are compared lower case, without angle brackets, in any order.
func SubjectKey(base string, lists []string) Key {
	if base == "" {
		return ""
	}
	norm := make([]string, 0, len(lists))
	for _, l := range lists {
		if l = normAddr(l); l != "" {
			norm = append(norm, l)
		}
	}
	if len(norm) == 0 {
		return ""
	}
	slices.Sort(norm)
	norm = slices.Compact(norm)
	return makeKey(kindSubject, base+"\x00"+strings.Join(norm, "\x00"))
}

// Resolve picks the message's thread and says which identity gave it. found
// is the store's answer for id.Lookup (aligned with it; missing entries
// count as not linked), or nil when the caller did not ask.
//
// The thread is the one the first linked Lookup key leads to: the nearest
// ancestor stormguard recorded, else the conversation of the Thread-Index
// GUID, else (a reply naming no ancestor) that of the reply subject on
// the same lists. Else, with ancestor ids, Root.Thread(), so that replies
// to a message stormguard never saw still agree on a thread; else the
// Thread() of the first Lookup key; else Own.Thread(), a new thread. When Own is empty
// too it returns "" and the caller makes a thread up.
//
// When known ancestors lead to different threads (two conversations that
// stormguard counted apart, or a hostile References naming two storms),
// the nearest one's thread is the message's, and only that thread counts
// it. The message links only its own identities, never an ancestor's,
// and a link is only ever written where none exists, so naming a thread
// in References moves nothing: no thread is merged into another, and each
// keeps its count, block and override.
func Resolve(id Identity, found []ThreadID) (ThreadID, Source) {
	for i, t := range found {
		if i >= len(id.Lookup) {
			break
		}
		if t != "" {
			return t, id.source(i)
		}
	}
	switch {
	case id.Root != "":
		return id.Root.Thread(), id.RootFrom
	case len(id.Lookup) > 0:
		return id.Lookup[0].Thread(), id.source(0)
	}
	return id.Own.Thread(), SourceNew
}

// source is the Source of Lookup[i]; an Identity built by hand without
// Sources says "ancestor", the first kind of lookup.
func (id Identity) source(i int) Source {
	if i < len(id.Sources) {
		return id.Sources[i]
	}
	return SourceAncestor
}
