package smtpenv

import (
	"strings"
)

// HeaderField is one header of a Message.
type HeaderField struct {
	Name, Value string
}

// Message builds a test message: headers in the order added, then the body.
//
//	data := smtpenv.NewMessage().
//		Add("From", "a@example.org").
//		Add("Subject", "Re: lunch").
//		SetBody("see you\n").
//		Bytes()
type Message struct {
	Headers []HeaderField
	Body    string
}

// NewMessage returns an empty message.
func NewMessage() *Message { return &Message{} }

// Add appends a header. A value may hold "\n" followed by whitespace to fold.
func (m *Message) Add(name, value string) *Message {
	m.Headers = append(m.Headers, HeaderField{name, value})
	return m
}

// SetBody sets the body.
func (m *Message) SetBody(body string) *Message {
	m.Body = body
	return m
}

// Bytes renders the message with CRLF line ends (bare LF and CRLF in values
// and body both become CRLF) and a body ending in CRLF.
func (m *Message) Bytes() []byte {
	var b strings.Builder
	for _, h := range m.Headers {
		b.WriteString(h.Name)
		b.WriteString(": ")
		b.WriteString(h.Value)
		b.WriteString("\n")
	}
	b.WriteString("\n")
	b.WriteString(m.Body)
	s := strings.ReplaceAll(b.String(), "\r\n", "\n")
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}
