package events

import "time"

// DefaultSummaryEvery is how often a Summarizer reports each blocked
// thread when nothing is configured (alerts.summary_every).
const DefaultSummaryEvery = time.Minute

// Defaults is the notifier's configuration when nothing is configured (the
// alerts.* keys of cmd/stormguard): the one statement of these defaults.
func Defaults() Config {
	return Config{Queue: 1000, WebhookTimeout: 5 * time.Second,
		Mail: MailConfig{SMTP: DefaultNotifySMTP, Timeout: 10 * time.Second, MaxPerHour: 20, GateHoldsPerHour: 20}} // Mail.OncePer: the caller's block time
}
