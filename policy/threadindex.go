package policy

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// Outlook's Thread-Index header is the base64 of a conversation index
// ([MS-OXOMSG] PidTagConversationIndex): a 22-byte header block (one
// reserved byte 0x01, 5 bytes of FILETIME, a 16-byte GUID that stays the
// same for the whole conversation) followed by one 5-byte child block per
// reply or forward.
const (
	threadIndexHeader = 22
	threadIndexChild  = 5
)

// ThreadIndexGUID returns the conversation GUID of an Outlook Thread-Index
// value as 32 lowercase hex characters (bytes 6..21 of the decoded index).
//
// Only the first 32 base64 characters are decoded, so a truncated tail does
// not matter; padding may be missing and folding whitespace is ignored. ok
// is false when fewer than 22 bytes decode, when the first byte is not the
// reserved 0x01, or when the GUID is a single repeated byte (all zero, say):
// such a value is a broken or forged header, and taking it as a key would
// join every message that carries it into one thread.
func ThreadIndexGUID(v string) (string, bool) {
	guid, _, ok := parseThreadIndex(v)
	return guid, ok
}

// parseThreadIndex is ThreadIndexGUID that also reports the number of
// child blocks, judged from the encoded length: more than zero means the
// message replies to or forwards an earlier one of the conversation.
func parseThreadIndex(v string) (guid string, children int, ok bool) {
	v = unfold(v)
	if len(v) > 4096 {
		v = v[:4096]
	}
	s := strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, v)
	if i := strings.IndexByte(s, '='); i >= 0 {
		s = s[:i] // padding, or garbage after it
	}
	total := len(s) * 6 / 8 // bytes the whole value would decode to
	if len(s) > 32 {
		s = s[:32]
	}
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil || len(b) < threadIndexHeader || b[0] != 0x01 {
		return "", 0, false
	}
	g := b[6:threadIndexHeader]
	same := true
	for _, c := range g[1:] {
		if c != g[0] {
			same = false
			break
		}
	}
	if same {
		return "", 0, false
	}
	return hex.EncodeToString(g), (total - threadIndexHeader) / threadIndexChild, true
}
