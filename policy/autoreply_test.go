package policy

import (
	"fmt"
	"testing"
)

func TestIsAutoReply(t *testing.T) {
	const irt = "<parent@example.org>"
	tests := []struct {
		name string
		h    Headers
		want bool
	}{
		{"ordinary mail", Headers{Subject: "Hello"}, false},
		{"ordinary reply", Headers{Subject: "Re: Hello", InReplyTo: irt}, false},
		{"Auto-Submitted: no", Headers{AutoSubmitted: "no", InReplyTo: irt}, false},

		// Strong signals.
		{"auto-replied (RFC 3834)", Headers{AutoSubmitted: " auto-replied"}, true},
		{"auto-replied with parameters", Headers{AutoSubmitted: "Auto-Replied; owner-email=\"a@x\""}, true},
		{"read receipt", Headers{ContentType: `multipart/report; report-type=disposition-notification; boundary="b"`}, true},
		{"read receipt, quoted and folded", Headers{ContentType: " multipart/report;\r\n\treport-type=\"Disposition-Notification\";\r\n\tboundary=\"x\""}, true},
		{"delivery report", Headers{ContentType: "multipart/report; report-type=delivery-status; boundary=b"}, true},
		{"broken report content type", Headers{ContentType: "multipart/report; report-type=delivery-status; boundary=\"unterminated"}, true},
		{"other multipart/report", Headers{ContentType: "multipart/report; report-type=feedback-report; boundary=b"}, false},
		{"ordinary content type", Headers{ContentType: "text/plain; charset=utf-8"}, false},
		{"X-Autoreply", Headers{XAutoreply: " yes"}, true},
		{"X-Autorespond", Headers{XAutorespond: "1"}, true},
		{"X-Autoreply: no", Headers{XAutoreply: "no"}, false},
		{"Outlook automatic reply", Headers{Subject: "Automatic reply: Quarterly results"}, true},
		{"Out of Office", Headers{Subject: "Out of Office: RE: Quarterly results"}, true},
		{"Notes", Headers{Subject: "Out of Office AutoReply: Quarterly results"}, true},
		{"German", Headers{Subject: "Abwesenheitsnotiz: AW: Quarterly results"}, true},
		{"French with space", Headers{Subject: "Réponse automatique : Quarterly results"}, true},
		{"Swedish", Headers{Subject: "Autosvar: Quarterly results"}, true},
		{"Dutch", Headers{Subject: "Automatisch antwoord: Quarterly results"}, true},
		{"Italian", Headers{Subject: "Risposta automatica: Quarterly results"}, true},
		{"Spanish", Headers{Subject: "Respuesta automática: Quarterly results"}, true},
		{"Russian", Headers{Subject: "Автоответ: Quarterly results"}, true},
		{"Chinese", Headers{Subject: "自动回复: Quarterly results"}, true},
		{"encoded", Headers{Subject: "=?UTF-8?B?6Ieq5Yqo5Zue5aSNOiBIZWxsbw==?="}, true}, // 自动回复: Hello
		{"behind a gateway tag", Headers{Subject: "[EXTERNAL] Automatic reply: Hello"}, true},
		{"out-of-office words without colon", Headers{Subject: "Out of office tomorrow"}, false},
		{"reply to an auto-reply is a person", Headers{Subject: "RE: Automatic reply: Hello", InReplyTo: irt}, false},

		// Weak signals count only on replies.
		{"auto-generated notification", Headers{AutoSubmitted: "auto-generated", Subject: "Build failed"}, false},
		{"auto-generated reply", Headers{AutoSubmitted: "auto-generated", Subject: "Build failed", InReplyTo: irt}, true},
		{"auto-notified with references", Headers{AutoSubmitted: "auto-notified", References: irt}, true},
		{"auto-generated with reply subject", Headers{AutoSubmitted: "auto-generated", Subject: "Re: Hello"}, true},
		{"auto-generated with forward subject", Headers{AutoSubmitted: "auto-generated", Subject: "Fwd: Hello"}, false},
		{"newsletter", Headers{Precedence: "bulk", Subject: "November news"}, false},
		{"vacation program", Headers{Precedence: "bulk", Subject: "Re: Hello"}, true},
		{"junk reply", Headers{Precedence: " Junk", InReplyTo: irt}, true},
		{"outlook thread-index reply", Headers{Precedence: "bulk", ThreadIndex: makeThreadIndex(testGUID, 1)}, true},
		{"outlook thread-index original", Headers{Precedence: "bulk", ThreadIndex: makeThreadIndex(testGUID, 0)}, false},
		{"mailing list post of a reply", Headers{Precedence: "list", InReplyTo: irt, Subject: "Re: Hello", ListID: "<staff.example.org>"}, false},
		{"Precedence: list is no signal", Headers{Precedence: "list", InReplyTo: irt}, false},
		{"majordomo bulk with List-Id", Headers{Precedence: "bulk", InReplyTo: irt, ListID: "Staff <staff.example.org>"}, false},
		{"auto-generated with List-Id still counts", Headers{AutoSubmitted: "auto-generated", InReplyTo: irt, ListID: "<staff.example.org>"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsAutoReply(Parse(tt.h)); got != tt.want {
				t.Errorf("IsAutoReply(%+v) = %v, want %v", tt.h, got, tt.want)
			}
		})
	}
}

func ExampleIsAutoReply() {
	fmt.Println(
		IsAutoReply(Parse(Headers{AutoSubmitted: "auto-replied", Subject: "Automatic reply: Hello"})),
		IsAutoReply(Parse(Headers{Precedence: "bulk", Subject: "November newsletter"})),     // bulk, not a reply
		IsAutoReply(Parse(Headers{Precedence: "bulk", Subject: "Re: November newsletter"})), // a vacation program
	)
	// Output: true false true
}
