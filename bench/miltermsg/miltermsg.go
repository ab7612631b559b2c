// Package miltermsg sends one message over a milter client session the way
// Postfix's smtpd does, for the load drivers under bench/.
package miltermsg

import (
	"fmt"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// Send sends MAIL, the RCPTs, DATA, the headers and end of headers, then
// the end of message if the milter has not decided, and an abort to reset
// the session for the next message. It returns the verdict ("accept",
// "reject", "tempfail", "discard", or "continue" when the milter let the
// message go on) and the time from end of headers to the milter's answer.
// A decision before end of headers is an error: the drivers send mail a
// milter decides at end of headers.
func Send(s *gomilter.ClientSession, from string, rcpts []string, headers [][2]string) (string, time.Duration, error) {
	act, err := s.Mail(from, "")
	if err != nil {
		return "", 0, fmt.Errorf("mail: %w", err)
	}
	if act.StopProcessing() {
		return "", 0, fmt.Errorf("decided at MAIL: %v", act.Type)
	}
	for _, r := range rcpts {
		if act, err = s.Rcpt(r, ""); err != nil {
			return "", 0, fmt.Errorf("rcpt: %w", err)
		}
		if act.StopProcessing() {
			return "", 0, fmt.Errorf("decided at RCPT: %v", act.Type)
		}
	}
	if _, err := s.DataStart(); err != nil {
		return "", 0, fmt.Errorf("data: %w", err)
	}
	for _, h := range headers {
		if act, err = s.HeaderField(h[0], h[1], nil); err != nil {
			return "", 0, fmt.Errorf("header: %w", err)
		}
		if act.StopProcessing() {
			return "", 0, fmt.Errorf("decided at header %s: %v", h[0], act.Type)
		}
	}
	start := time.Now()
	act, err = s.HeaderEnd()
	took := time.Since(start)
	if err != nil {
		return "", 0, fmt.Errorf("eoh: %w", err)
	}
	verdict := "continue"
	switch act.Type {
	case gomilter.ActionAccept:
		verdict = "accept"
	case gomilter.ActionReject, gomilter.ActionRejectWithCode:
		verdict = "reject"
		if act.SMTPCode/100 == 4 {
			verdict = "tempfail"
		}
	case gomilter.ActionTempFail:
		verdict = "tempfail"
	case gomilter.ActionDiscard:
		verdict = "discard"
	}
	if verdict == "continue" {
		if _, _, err := s.End(); err != nil {
			return "", 0, fmt.Errorf("eom: %w", err)
		}
	}
	return verdict, took, s.Abort(nil)
}
