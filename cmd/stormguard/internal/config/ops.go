package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/stormguard/stormguard/admin"
)

// adminSetting is http.admin: auto, true or false.
type adminSetting string

// http.admin values.
const (
	adminAuto  adminSetting = "auto"  // served when http.listen is a loopback address
	adminTrue  adminSetting = "true"  // served on any http.listen: firewall it
	adminFalse adminSetting = "false" // never served
)

// AdminServed reports whether the daemon serves the admin API /admin/
// (which changes policy; every request needs the admin token), and if
// not, why.
func (c *Config) AdminServed() (bool, string) {
	switch {
	case c.HTTP.Listen == "":
		return false, `http.listen is empty, so the daemon runs no HTTP server`
	case c.HTTP.Admin == adminFalse:
		return false, "http.admin is false"
	case c.HTTP.Admin == adminAuto && !admin.IsLoopback(c.HTTP.Listen):
		return false, fmt.Sprintf("http.listen %s is not a loopback address and http.admin is auto; set http.admin: true to serve it there (and firewall it)", c.HTTP.Listen)
	}
	return true, ""
}

// AdminBaseURL is where the subcommands find the daemon's admin API: its
// http.listen, with a wildcard host asked on loopback.
func (c *Config) AdminBaseURL() string {
	host, port, _ := net.SplitHostPort(c.HTTP.Listen)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

// validateOps checks the http and alerts settings.
func (c *Config) validateOps() error {
	if c.HTTP.Listen != "" {
		if _, port, err := net.SplitHostPort(c.HTTP.Listen); err != nil || port == "" {
			return fmt.Errorf("http.listen: %q is not HOST:PORT (or empty to disable)", c.HTTP.Listen)
		}
	}
	if c.HTTP.MaxConnections < 1 {
		return fmt.Errorf("http.max_connections: must be at least 1, got %d", c.HTTP.MaxConnections)
	}
	if c.HTTP.MaxConnectionsPerClient < 1 || c.HTTP.MaxConnectionsPerClient > c.HTTP.MaxConnections {
		return fmt.Errorf("http.max_connections_per_client: must be from 1 to http.max_connections (%d), got %d", c.HTTP.MaxConnections, c.HTTP.MaxConnectionsPerClient)
	}
	if c.HTTP.ReadHeaderTimeout <= 0 {
		return fmt.Errorf("http.read_header_timeout: must be positive, got %s", c.HTTP.ReadHeaderTimeout)
	}
	if c.HTTP.IdleTimeout <= 0 {
		return fmt.Errorf("http.idle_timeout: must be positive, got %s", c.HTTP.IdleTimeout)
	}
	c.HTTP.Admin = adminSetting(strings.ToLower(strings.TrimSpace(string(c.HTTP.Admin))))
	switch c.HTTP.Admin {
	case adminAuto, adminTrue, adminFalse:
	default:
		return fmt.Errorf("http.admin: %q is not auto, true or false", c.HTTP.Admin)
	}
	if c.Alerts.WebhookURL != "" {
		u, err := url.Parse(c.Alerts.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("alerts.webhook_url: %q is not an http(s) URL", c.Alerts.WebhookURL)
		}
	}
	if c.Alerts.WebhookTimeout <= 0 {
		return fmt.Errorf("alerts.webhook_timeout: must be positive, got %s", c.Alerts.WebhookTimeout)
	}
	if c.Alerts.SummaryEvery <= 0 {
		return fmt.Errorf("alerts.summary_every: must be positive, got %s", c.Alerts.SummaryEvery)
	}
	if err := c.EventsConfig().Mail.Validate(); err != nil {
		return err
	}
	if c.Alerts.Queue < 1 {
		return fmt.Errorf("alerts.queue: must be at least 1, got %d", c.Alerts.Queue)
	}
	return nil
}

// reportURL is the report page's address for mail notices: http.listen,
// with this host's name for a wildcard host; "" without http.listen.
func (c *Config) reportURL() string {
	host, port, err := net.SplitHostPort(c.HTTP.Listen)
	if err != nil || port == "" {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = hostname()
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}
