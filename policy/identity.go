package policy

import (
	"slices"
	"strings"
)

// Source says which identity of a message gave its thread.
type Source string

const (
	SourceReferences  Source = "references"   // References' first id, the root
	SourceInReplyTo   Source = "in-reply-to"  // the parent's id, through its link
	SourceThreadIndex Source = "thread-index" // Outlook's conversation GUID
	SourceSubject     Source = "subject"      // reply subject and list recipients
	SourceNew         Source = "new"          // none known: the message starts a thread
)

// maxReportRunes caps Identity.Subject.
const maxReportRunes = 200

// Identity is everything policy can tell about a message's conversation
// from its headers alone. The caller resolves Lookup through the store
// (Store.Resolve), passes the answer to Resolve, and records Links against
// the thread Resolve picked.
type Identity struct {
	Own     Key      // MessageIDKey of its own Message-ID ("" if none)
	Root    Key      // MessageIDKey of References' first id; when set, Lookup is just [Root] and the thread is Root's link or Root.Thread()
	Lookup  []Key    // keys to resolve through stored links: [Root] when Root is set, else In-Reply-To's last id, Thread-Index GUID key, subject key
	Sources []Source // what each Lookup key is, aligned with Lookup
	Links   []Key    // identities this message links to its thread: Own, GUID key, subject key (non-empty ones, no duplicates)
	Reply   bool     // threading headers or a reply prefix
	Subject string   // normalised base subject for reports, at most 200 runes
	Display string   // the subject as people wrote it, decoded and made one safe line, at most 200 runes
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
// prefix on its subject. Only replies look anything up: a reply with
// References looks up its root only, others their parent's id, their
// Thread-Index GUID and their subject key, in that order. Every message,
// replies and originals alike, links its own identities, so that later
// replies carrying only a Thread-Index, only an In-Reply-To or only a reply
// subject find its thread.
func Identify(m Message, lists []string) Identity {
	var id Identity
	if m.MessageID != "" {
		id.Own = MessageIDKey(m.MessageID)
	}
	if len(m.References) > 0 {
		id.Root = MessageIDKey(m.References[0])
	}
	var parent Key
	if n := len(m.InReplyTo); n > 0 {
		parent = MessageIDKey(m.InReplyTo[n-1])
	}
	var guidKey Key
	if m.ThreadIndex.GUID != "" {
		guidKey = makeKey(kindThreadIndex, m.ThreadIndex.GUID)
	}
	id.Subject = cutRunes(m.Subject.Base, maxReportRunes)
	id.Display = m.Subject.Display
	subjectKey := SubjectKey(m.Subject.Base, lists)
	id.Reply = m.IsReply()

	switch {
	case id.Root != "":
		id.Lookup, id.Sources = []Key{id.Root}, []Source{SourceReferences}
	case id.Reply:
		for _, l := range []struct {
			k Key
			s Source
		}{{parent, SourceInReplyTo}, {guidKey, SourceThreadIndex}, {subjectKey, SourceSubject}} {
			if l.k != "" && l.k != id.Own && !slices.Contains(id.Lookup, l.k) {
				id.Lookup = append(id.Lookup, l.k)
				id.Sources = append(id.Sources, l.s)
			}
		}
	}
	for _, k := range []Key{id.Own, guidKey, subjectKey} {
		if k != "" && !slices.Contains(id.Links, k) {
			id.Links = append(id.Links, k)
		}
	}
	return id
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
// is the store's answer for id.Lookup (aligned with it), or nil when the
// caller did not ask. The thread is the first non-empty found[i]; else
// Root.Thread() when Root is set; else the Thread() of the first Lookup key,
// so that replies to a message stormguard never saw still agree on a
// thread; else Own.Thread(), a new thread. When Own is empty too it returns
// "" and the caller makes a thread up.
//
// With References, asking the store is optional: without an answer the
// thread is Root.Thread(), which is the root's own thread whenever the root
// started it. It is not when the first id of References is itself a reply
// that was counted in another thread, as happens when a client replies to
// an Outlook reply that carried no References: its link leads to the
// storm's thread, Root.Thread() would start a new one. The milter does not
// ask: it records such a reply in Root.Thread() with store.Record.Follow,
// and the store follows the root to the storm's thread in the same call.
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
		return id.Root.Thread(), SourceReferences
	case len(id.Lookup) > 0:
		return id.Lookup[0].Thread(), id.source(0)
	}
	return id.Own.Thread(), SourceNew
}

// source is the Source of Lookup[i]; an Identity built by hand without
// Sources says "in-reply-to", the first kind of lookup.
func (id Identity) source(i int) Source {
	if i < len(id.Sources) {
		return id.Sources[i]
	}
	return SourceInReplyTo
}
