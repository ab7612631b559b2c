package policy

import (
	"io"
	"mime"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/unicode/norm"
)

// Subject limits.
const (
	maxSubjectBytes = 32 << 10 // raw subject bytes examined
	maxBaseRunes    = 500      // runes kept of a base subject
)

// prefixKind says what a stripped subject prefix means.
type prefixKind int

const (
	prefixNone    prefixKind = iota
	prefixReply              // Re:, AW:, SV:, 回复: …: the message answers another
	prefixForward            // Fwd:, WG:, TR:, RV: …: passes another on
	prefixTag                // [list], EXTERNAL: …: neither
)

// Reply prefixes of mail clients in many languages, written as the clients
// write them; the tables hold their folded forms. Every prefix counts only
// when a colon follows (after optional space and an optional counter such
// as "[2]", "(2)" or "^2"), so "Richard" never loses its "R" and "Ideas"
// never its "I". Out-of-office prefixes (Outlook's "Automatic reply: RE:
// Hello") count as replies, so an auto-reply joins the thread it answers.
var replyPrefixes = foldAll(
	"Re", "AW", "SV", "Svar", "VS", "Antw", "Antwort", "R", "RIF", "RES",
	"Odp", "Odg", "YNT", "Vá", "Atb", "Ats",
	"Ответ", "Отв", "Відп", "ΑΠ", "ΣΧΕΤ", "תגובה", "השב", "رد",
	"回复", "回覆", "答复", "答覆", "返信", "회신", "답장",
)

var forwardPrefixes = foldAll(
	"Fw", "Fwd", "WG", "VB", "VL", "FS", "Doorst", "I", "TR", "RV", "ENC",
	"PD", "İLT", "ILT", "Tov", "Pārs", "Pers", "Posr", "Prosl",
	"Пересл", "ΠΡΘ", "העבר", "إعادة توجيه",
	"转发", "轉寄", "转寄", "轉發", "転送", "전달",
)

// outOfOffice are subject prefixes of out-of-office and other automatic
// replies (Exchange, Outlook, Notes, Gmail, Apple, Zimbra and friends).
var outOfOffice = foldAll(
	"Automatic reply", "Auto reply", "Autoreply", "Auto-reply",
	"Auto response", "Autoresponse", "Out of Office", "Out of Office AutoReply",
	"Out of the office", "Abwesenheitsnotiz", "Automatische Antwort",
	"Réponse automatique", "Autosvar", "Automatisk svar",
	"Automatisch antwoord", "Risposta automatica", "Respuesta automática",
	"Resposta automática", "Odpowiedź automatyczna", "Automatická odpověď",
	"Otomatik yanıt", "Автоответ", "Автоматический ответ",
	"Αυτόματη απάντηση", "תשובה אוטומטית", "رد تلقائي",
	"自动回复", "自動回覆", "自动答复", "自動回复", "自動応答", "자동 회신",
)

// neutralPrefixes are words that mail gateways put before a subject.
var neutralPrefixes = foldAll("External", "Extern", "Ext")

func foldAll(words ...string) []string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = canonical(w)
	}
	return out
}

// NormalizeSubject returns the base subject of a raw Subject value: RFC 2047
// decoded (any charset the WHATWG encoding standard knows; raw 8-bit bytes
// that are not UTF-8 are read as windows-1252), NFKC-normalised and
// Unicode case-folded, control and format characters removed, whitespace
// collapsed, and every leading reply, forward and gateway prefix and
// "[tag]" stripped, stacked in any order ("[EXT] RE: [all-staff] AW:
// Hello" gives "hello"), as well as "(fwd)" trailers and the "[Fwd: …]"
// wrapper of RFC 5256. A "[tag]" that is all there is stays. The base is
// cut at 500 runes.
//
// reply is true when at least one reply prefix (not only forward or tag
// prefixes) was stripped. NormalizeSubject of its own output gives the same
// base (unless the base itself contains text that looks like an RFC 2047
// encoded word).
func NormalizeSubject(v string) (base string, reply bool) {
	return normalizeCanonical(canonical(decodeSubject(v)))
}

// normalizeCanonical is NormalizeSubject after decoding and canonical.
func normalizeCanonical(s string) (base string, reply bool) {
	base, reply = stripPrefixes(s)
	return cutRunes(base, maxBaseRunes), reply
}

// parseSubject decodes a raw Subject value once and derives from it all
// that policy asks of a subject.
func parseSubject(v string) Subject {
	if v == "" {
		return Subject{}
	}
	decoded := decodeSubject(v)
	canon := canonical(decoded)
	var s Subject
	s.Base, s.Reply = normalizeCanonical(canon)
	s.OutOfOffice = isOutOfOffice(canon)
	s.Display = displaySubject(decoded)
	return s
}

// DisplaySubject is a raw Subject header as people should see it in reports
// and alerts: RFC 2047-decoded, valid UTF-8, control and format characters
// removed, spaces collapsed, case and prefixes kept, at most 200 runes.
func DisplaySubject(v string) string {
	return displaySubject(decodeSubject(v))
}

// displaySubject is DisplaySubject after decoding.
func displaySubject(decoded string) string {
	s := strings.Map(func(r rune) rune {
		switch {
		case unicode.IsSpace(r):
			return ' '
		case unicode.IsControl(r), unicode.Is(unicode.Cf, r):
			return -1
		}
		return r
	}, decoded)
	if strings.HasPrefix(s, " ") || strings.HasSuffix(s, " ") || strings.Contains(s, "  ") {
		s = strings.Join(strings.Fields(s), " ")
	}
	return cutRunes(s, maxReportRunes)
}

// decodeSubject unfolds a raw subject and decodes its RFC 2047 encoded
// words into valid UTF-8.
func decodeSubject(v string) string {
	v = unfold(v)
	v = cutBytes(v, maxSubjectBytes)
	if strings.Contains(v, "=?") {
		d := mime.WordDecoder{CharsetReader: charsetReader}
		if s, err := d.DecodeHeader(v); err == nil {
			v = s
		} else {
			d.CharsetReader = rawCharset
			if s, err := d.DecodeHeader(v); err == nil {
				v = s
			}
		}
	}
	return mendUTF8(v)
}

// charsetReader converts from any charset label the WHATWG encoding
// standard knows (iso-8859-x, windows-125x, koi8-r, gb2312/gbk, big5,
// shift_jis, iso-2022-jp, euc-kr, ks_c_5601-1987, …). Unknown labels give
// the raw bytes, which mendUTF8 reads as windows-1252. It never fails, so
// one odd word never spoils the rest of the header.
func charsetReader(charset string, r io.Reader) (io.Reader, error) {
	if i := strings.IndexByte(charset, '*'); i >= 0 {
		charset = charset[:i] // RFC 2231 language suffix: utf-8*en
	}
	enc, err := htmlindex.Get(charset)
	if err != nil || enc == nil {
		return r, nil
	}
	return enc.NewDecoder().Reader(r), nil
}

func rawCharset(_ string, r io.Reader) (io.Reader, error) { return r, nil }

// mendUTF8 keeps valid UTF-8 and reads every invalid byte as windows-1252,
// the most common charset of raw 8-bit headers.
func mendUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			r = charmap.Windows1252.DecodeByte(s[i])
			n = 1
		}
		b.WriteRune(r)
		i += n
	}
	return b.String()
}

// canonical puts decoded text in the form subjects are compared in:
// control and format characters (zero-width and direction marks) removed,
// every kind of space made one ASCII space, NFKC-normalised (so "ＲＥ："
// reads "RE:") and case-folded (so "ß" matches "SS" and "ς" matches "Σ"),
// runs of spaces collapsed, ends trimmed.
func canonical(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case unicode.IsSpace(r):
			return ' '
		case unicode.IsControl(r), unicode.Is(unicode.Cf, r), r == utf8.RuneError:
			return -1
		}
		return r
	}, s)
	if isASCII(s) {
		s = strings.ToLower(s) // all that folding and NFKC do to ASCII
	} else {
		s = foldNFKC(s)
	}
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == ' ' }), " ")
}

// foldNFKC case-folds and NFKC-normalises s until neither changes it.
func foldNFKC(s string) string {
	for range 4 { // folding and NFKC settle in one or two rounds
		t := norm.NFKC.String(cases.Fold().String(s))
		if t == s {
			break
		}
		s = t
	}
	return s
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// stripPrefixes strips stacked prefixes and tags from a canonical subject.
func stripPrefixes(s string) (string, bool) {
	reply := false
	for {
		s = stripTrailers(s)
		rest, kind := stripOne(s)
		if kind == prefixNone {
			return s, reply
		}
		if kind == prefixReply {
			reply = true
		}
		s = rest
	}
}

// stripOne strips one leading prefix or tag and says what it was.
func stripOne(s string) (string, prefixKind) {
	if strings.HasPrefix(s, "[") {
		if strings.HasPrefix(s, "[fwd:") && strings.HasSuffix(s, "]") {
			if inner := strings.TrimSpace(s[len("[fwd:") : len(s)-1]); inner != "" {
				return inner, prefixForward
			}
		}
		j := strings.IndexByte(s, ']')
		if j > 0 && !strings.Contains(s[1:j], "[") {
			if rest := strings.TrimLeft(s[j+1:], " "); rest != "" {
				return rest, prefixTag
			}
		}
		return s, prefixNone
	}
	if strings.IndexByte(s, ':') < 0 {
		return s, prefixNone // every prefix word needs its colon (matchPrefix)
	}
	for _, p := range replyPrefixes {
		if rest, ok := matchPrefix(s, p); ok {
			return rest, prefixReply
		}
	}
	for _, p := range forwardPrefixes {
		if rest, ok := matchPrefix(s, p); ok {
			return rest, prefixForward
		}
	}
	for _, p := range neutralPrefixes {
		if rest, ok := matchPrefix(s, p); ok {
			return rest, prefixTag
		}
	}
	return s, prefixNone
}

// matchPrefix reports whether s starts with word p followed by an optional
// space, an optional counter ("[2]", "(2)", "^2"), an optional space and a
// colon, and returns what follows the colon.
func matchPrefix(s, p string) (string, bool) {
	if !strings.HasPrefix(s, p) {
		return s, false
	}
	r := strings.TrimPrefix(s[len(p):], " ")
	if r != "" && strings.ContainsRune("[(^", rune(r[0])) {
		i := 1
		for i < len(r) && r[i] >= '0' && r[i] <= '9' {
			i++
		}
		switch {
		case i == 1:
			return s, false
		case r[0] == '^':
			r = r[i:]
		case i < len(r) && (r[0] == '[' && r[i] == ']' || r[0] == '(' && r[i] == ')'):
			r = r[i+1:]
		default:
			return s, false
		}
		r = strings.TrimPrefix(r, " ")
	}
	if !strings.HasPrefix(r, ":") {
		return s, false
	}
	return strings.TrimLeft(r[1:], " "), true
}

// stripTrailers strips "(fwd)" trailers (RFC 5256 §2.1).
func stripTrailers(s string) string {
	for strings.HasSuffix(s, "(fwd)") {
		s = strings.TrimRight(strings.TrimSuffix(s, "(fwd)"), " ")
	}
	return s
}

// cutRunes cuts s to at most n runes and trims a trailing space.
func cutRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for k := range s {
		if n == 0 {
			i = k
			break
		}
		n--
	}
	return strings.TrimRight(s[:i], " ")
}

// isOutOfOffice reports whether a subject, decoded and in canonical form,
// starts, after any gateway tags, with an out-of-office or automatic-reply
// prefix.
func isOutOfOffice(s string) bool {
	for {
		rest, kind := stripOne(s)
		if kind != prefixTag {
			break
		}
		s = rest
	}
	if strings.IndexByte(s, ':') < 0 {
		return false // every prefix word needs its colon (matchPrefix)
	}
	for _, p := range outOfOffice {
		if _, ok := matchPrefix(s, p); ok {
			return true
		}
	}
	return false
}
