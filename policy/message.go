package policy

// Headers are the raw values of the headers policy looks at, as the milter
// collected them: possibly with a leading space and folded ("\r\n " or
// "\n\t"). Empty means absent. Policy reads them once, in Parse.
type Headers struct {
	MessageID, InReplyTo, References, ThreadIndex, Subject           string
	To, Cc                                                           []string // each occurrence's raw value
	From                                                             string
	AutoSubmitted, Precedence, XAutoreply, XAutorespond, ContentType string
	// ListID is the List-Id header (RFC 2919). A message that carries one
	// was distributed by a mailing list manager, whose Precedence header
	// says nothing about auto-replies (see IsAutoReply).
	ListID string
}

// Message is a message as policy reads it: each header unfolded, decoded
// and parsed once, by Parse, into the typed fields that Audience,
// IsAutoReply and Identify read. Nothing after Parse looks at a raw header.
type Message struct {
	MessageID  string   // Message-ID's id, normalised (ParseMessageID); "" when it has none
	InReplyTo  []string // In-Reply-To's ids (ParseIDList)
	References []string // References' ids, the root first (ParseIDList)
	Recipients []string // To's then Cc's addresses (ParseAddressList): the header side of Audience

	ThreadIndex ThreadIndex
	Subject     Subject

	// The auto-reply signals (IsAutoReply).
	AutoSubmitted string // Auto-Submitted's first token, lower case ("auto-replied", "no"; "" when absent)
	Precedence    string // Precedence's first token, lower case ("bulk", "junk", "list"; "" when absent)
	XAutoreply    bool   // X-Autoreply is present with a value other than "no", "false", "0", "off"
	XAutorespond  bool   // the same for X-Autorespond
	Report        bool   // Content-Type is a read receipt or a delivery report (multipart/report)
	ListID        bool   // a non-empty List-Id header is present
}

// ThreadIndex is what an Outlook Thread-Index header says.
type ThreadIndex struct {
	GUID     string // the conversation GUID, 32 lowercase hex characters (ThreadIndexGUID); "" when absent or unusable
	Children int    // child blocks, one per reply or forward; 0 when GUID is ""
}

// Subject is what a Subject header says, decoded once.
type Subject struct {
	Base        string // the base subject (NormalizeSubject), at most 500 runes
	Reply       bool   // a reply prefix was stripped (NormalizeSubject's reply)
	OutOfOffice bool   // it starts, after gateway tags, with an out-of-office prefix ("Automatic reply:")
	Display     string // as people wrote it (DisplaySubject), at most 200 runes
}

// Parse reads a message's headers once, where the message enters policy.
// Each field is what the header's own parser (ParseMessageID, ParseIDList,
// ParseAddressList, ThreadIndexGUID, NormalizeSubject, DisplaySubject)
// returns for it, so the result is bounded and sane for any input.
func Parse(h Headers) Message {
	m := Message{
		InReplyTo:     ParseIDList(h.InReplyTo),
		References:    ParseIDList(h.References),
		Recipients:    parseAddresses(h.To, h.Cc),
		Subject:       parseSubject(h.Subject),
		AutoSubmitted: headerToken(h.AutoSubmitted),
		Precedence:    headerToken(h.Precedence),
		XAutoreply:    flagSet(h.XAutoreply),
		XAutorespond:  flagSet(h.XAutorespond),
		Report:        isReport(h.ContentType),
		ListID:        unfold(h.ListID) != "",
	}
	m.MessageID, _ = ParseMessageID(h.MessageID)
	m.ThreadIndex.GUID, m.ThreadIndex.Children, _ = parseThreadIndex(h.ThreadIndex)
	return m
}

// IsReply reports whether the message answers another: it has an
// In-Reply-To or References id, an Outlook Thread-Index with child blocks
// (Outlook appends one per reply or forward), or a reply prefix on its
// subject. Identity.Reply and IsAutoReply's weak signals both mean this.
func (m Message) IsReply() bool {
	return len(m.InReplyTo) > 0 || len(m.References) > 0 || m.ThreadIndex.Children > 0 || m.Subject.Reply
}
