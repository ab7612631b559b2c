package listsync

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// LDAPConfig is where and how to read groups from a directory.
type LDAPConfig struct {
	URL      string // ldap://host[:port] or ldaps://host[:port]
	StartTLS bool   // upgrade an ldap:// connection with StartTLS
	CAFile   string // PEM CA bundle for ldaps and StartTLS (system roots when empty)
	BindDN   string // empty: anonymous
	// PasswordFile holds the bind password (read at each sync, so it can
	// rotate; never in the config file itself, which check prints).
	PasswordFile string
	BaseDN       string
	// Filter selects the groups. Each group with a MailAttr value is a
	// list; groups nested in it are expanded whether or not they have one.
	Filter   string
	MailAttr string
}

// pageSize is the entries per page of a paged search (RFC 2696): at or
// below the usual size limits of service accounts (500 in OpenLDAP, 1000
// in Active Directory).
const pageSize = 500

// DefaultLDAPFilter finds OpenLDAP's groupOfNames, groupOfUniqueNames and
// posixGroup, and Active Directory's group.
const DefaultLDAPFilter = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup)(objectClass=group))"

// LDAPDefaults is the LDAPConfig with no directory.
func LDAPDefaults() LDAPConfig {
	return LDAPConfig{Filter: DefaultLDAPFilter, MailAttr: "mail"}
}

// Validate reports an LDAPConfig that cannot work, naming the key.
func (c LDAPConfig) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "" {
		return fmt.Errorf("listsync.ldap.url: %q is not ldap://HOST[:PORT] or ldaps://HOST[:PORT]", c.URL)
	}
	if c.StartTLS && u.Scheme == "ldaps" {
		return errors.New("listsync.ldap.starttls: ldaps:// is TLS already; StartTLS is for ldap://")
	}
	if c.BindDN != "" && c.PasswordFile == "" {
		return errors.New("listsync.ldap.password_file: bind_dn is set but no password file")
	}
	if c.BaseDN == "" {
		return errors.New("listsync.ldap.base_dn: empty; name the subtree the groups are in (e.g. dc=example,dc=org)")
	}
	if _, err := ldap.ParseDN(c.BaseDN); err != nil {
		return fmt.Errorf("listsync.ldap.base_dn: %q: %v", c.BaseDN, err)
	}
	if _, err := ldap.CompileFilter(c.Filter); err != nil {
		return fmt.Errorf("listsync.ldap.filter: %q: %v", c.Filter, err)
	}
	if c.MailAttr == "" {
		return errors.New("listsync.ldap.mail_attribute: empty")
	}
	return nil
}

// LDAP reads list sizes from a directory: every group the filter finds
// that has a mail address is a list; its members are the DNs in member
// and uniqueMember (a DN that is itself a group found by the filter is
// expanded) and the uids in memberUid (resolved to their entries' DNs, so
// a person in a posixGroup and a groupOfNames is one mailbox). Active
// Directory's ranged member values (member;range=0-1499) are read to
// the last range.
type LDAP struct {
	cfg LDAPConfig
}

// NewLDAP is the source for cfg.
func NewLDAP(cfg LDAPConfig) (*LDAP, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &LDAP{cfg: cfg}, nil
}

func (s *LDAP) Name() string { return "ldap " + s.cfg.URL }

// group is one group entry as read.
type group struct {
	mails   []string
	members []string // normalized DNs
	uids    []string
}

// Sizes implements Source.
func (s *LDAP) Sizes(ctx context.Context) (map[string]int, Stats, error) {
	var st Stats
	conn, err := s.connect(ctx)
	if err != nil {
		return nil, st, err
	}
	defer conn.Close()
	// go-ldap's paged search takes no context: closing the connection
	// when ctx ends makes it return.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	attrs := []string{s.cfg.MailAttr, "member", "uniqueMember", "memberUid"}
	entries, err := s.search(ctx, conn, s.cfg.Filter, attrs)
	if err != nil {
		return nil, st, fmt.Errorf("search %s under %s: %w", s.cfg.Filter, s.cfg.BaseDN, err)
	}
	groups := make(map[string]*group, len(entries))
	uidSet := map[string]bool{}
	for _, e := range entries {
		dn, ok := normDN(e.DN)
		if !ok {
			st.Skipped++
			continue
		}
		g := &group{}
		for _, m := range e.GetEqualFoldAttributeValues(s.cfg.MailAttr) {
			if a, ok := normAddr(m); ok && strings.Contains(a, "@") {
				g.mails = append(g.mails, a)
			} else {
				st.Skipped++
			}
		}
		ranged, err := s.rangedMembers(ctx, conn, e)
		if err != nil {
			return nil, st, err
		}
		for _, attr := range []string{"member", "uniqueMember"} {
			for _, v := range append(e.GetEqualFoldAttributeValues(attr), ranged[strings.ToLower(attr)]...) {
				if attr == "uniqueMember" { // nameAndOptionalUID: "dn#'0101'B"
					if i := strings.LastIndex(v, "#'"); i > 0 && strings.HasSuffix(v, "'B") {
						v = v[:i]
					}
				}
				if m, ok := normDN(v); ok {
					g.members = append(g.members, m)
				} else {
					st.Skipped++
				}
			}
		}
		for _, u := range e.GetEqualFoldAttributeValues("memberUid") {
			if u = strings.TrimSpace(u); u != "" {
				g.uids = append(g.uids, u)
				uidSet[u] = true
			} else {
				st.Skipped++
			}
		}
		groups[dn] = g
	}
	uidDN, err := s.resolveUIDs(ctx, conn, uidSet)
	if err != nil {
		return nil, st, err
	}
	if err := ctx.Err(); err != nil {
		return nil, st, err
	}

	for _, g := range groups {
		for _, u := range g.uids {
			if dn, ok := uidDN[u]; ok {
				g.members = append(g.members, dn)
			} else {
				g.members = append(g.members, "uid="+strings.ToLower(u)) // no entry: still one member
			}
		}
	}
	members := func(n string) ([]string, bool) {
		g, ok := groups[n]
		if !ok {
			return nil, false
		}
		return g.members, true
	}
	sizes := map[string]int{}
	for dn, g := range groups {
		if len(g.mails) == 0 {
			continue
		}
		n := expand(dn, members)
		for _, m := range g.mails {
			sizes[m] = max(sizes[m], n)
		}
	}
	st.Lists = len(sizes)
	return sizes, st, nil
}

// connect dials, upgrades with StartTLS if asked and binds.
func (s *LDAP) connect(ctx context.Context) (*ldap.Conn, error) {
	tlsCfg, err := s.tlsConfig()
	if err != nil {
		return nil, err
	}
	timeout := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	conn, err := ldap.DialURL(s.cfg.URL, ldap.DialWithDialer(&net.Dialer{Timeout: min(timeout, 10*time.Second)}),
		ldap.DialWithTLSConfig(tlsCfg))
	if err != nil {
		return nil, fmt.Errorf("cannot connect: %w", unwrapLDAP(err))
	}
	conn.SetTimeout(timeout)
	if s.cfg.StartTLS {
		if err := conn.StartTLS(tlsCfg); err != nil {
			conn.Close()
			return nil, fmt.Errorf("StartTLS: %w", unwrapLDAP(err))
		}
	}
	if s.cfg.BindDN != "" {
		pw, err := s.password()
		if err != nil {
			conn.Close()
			return nil, err
		}
		if err := conn.Bind(s.cfg.BindDN, pw); err != nil {
			conn.Close()
			return nil, fmt.Errorf("bind as %s refused: %w", s.cfg.BindDN, unwrapLDAP(err))
		}
	}
	return conn, nil
}

func (s *LDAP) password() (string, error) {
	b, err := os.ReadFile(s.cfg.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("listsync.ldap.password_file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func (s *LDAP) tlsConfig() (*tls.Config, error) {
	u, _ := url.Parse(s.cfg.URL)
	cfg := &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	if s.cfg.CAFile != "" {
		pem, err := os.ReadFile(s.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("listsync.ldap.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("listsync.ldap.ca_file: %s holds no PEM certificate", s.cfg.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// search is one paged subtree search under the base DN.
func (s *LDAP) search(ctx context.Context, conn *ldap.Conn, filter string, attrs []string) ([]*ldap.Entry, error) {
	req := ldap.NewSearchRequest(s.cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		filter, attrs, nil)
	res, err := conn.SearchWithPaging(req, pageSize)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, unwrapLDAP(err)
	}
	return res.Entries, nil
}

// rangedMembers reads the rest of member values that Active Directory
// sent in ranges: a group with more values than its MaxValRange (1,500)
// comes back as "member;range=0-1499" and is read on, one base search
// per range ("member;range=1500-*", ...), until a range ends in "*".
// It returns attribute (lower case) -> every ranged value.
func (s *LDAP) rangedMembers(ctx context.Context, conn *ldap.Conn, e *ldap.Entry) (map[string][]string, error) {
	var out map[string][]string
	for _, a := range e.Attributes {
		attr, _, hi, ok := parseRange(a.Name)
		if !ok || (attr != "member" && attr != "uniquemember") {
			continue
		}
		if out == nil {
			out = map[string][]string{}
		}
		out[attr] = append(out[attr], a.Values...)
		for next := 0; hi >= 0; next++ {
			if next > 100000 {
				return nil, fmt.Errorf("%s of %s: ranges do not end", attr, e.DN)
			}
			want := fmt.Sprintf("%s;range=%d-*", attr, hi+1)
			req := ldap.NewSearchRequest(e.DN, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
				"(objectClass=*)", []string{want}, nil)
			res, err := conn.Search(req)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if err != nil {
				return nil, fmt.Errorf("read %s of %s: %w", want, e.DN, unwrapLDAP(err))
			}
			prev := hi
			hi = -1
			for _, re := range res.Entries {
				for _, ra := range re.Attributes {
					if rattr, rlo, rhi, ok := parseRange(ra.Name); ok && rattr == attr {
						if rlo <= prev {
							return nil, fmt.Errorf("%s of %s: range %d- after %d does not move on", attr, e.DN, rlo, prev)
						}
						out[attr] = append(out[attr], ra.Values...)
						hi = rhi
					}
				}
			}
		}
	}
	return out, nil
}

// parseRange reads an attribute description with a range option,
// "member;range=0-1499" (hi 1499) or "member;range=1500-*" (hi -1: the
// last); attr is lower case.
func parseRange(name string) (attr string, lo, hi int, ok bool) {
	attr, opt, found := strings.Cut(strings.ToLower(name), ";range=")
	if !found {
		return "", 0, 0, false
	}
	l, h, found := strings.Cut(opt, "-")
	if !found {
		return "", 0, 0, false
	}
	lo, err := strconv.Atoi(l)
	if err != nil || lo < 0 {
		return "", 0, 0, false
	}
	if h == "*" {
		return attr, lo, -1, true
	}
	hi, err = strconv.Atoi(h)
	if err != nil || hi < lo {
		return "", 0, 0, false
	}
	return attr, lo, hi, true
}

// uidBatch is how many uids one search resolves.
const uidBatch = 200

// resolveUIDs maps memberUid values to the normalized DNs of the entries
// with that uid, uidBatch at a time.
func (s *LDAP) resolveUIDs(ctx context.Context, conn *ldap.Conn, uids map[string]bool) (map[string]string, error) {
	out := map[string]string{}
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		var f strings.Builder
		f.WriteString("(|")
		for _, u := range batch {
			f.WriteString("(uid=" + ldap.EscapeFilter(u) + ")")
		}
		f.WriteString(")")
		batch = batch[:0]
		entries, err := s.search(ctx, conn, f.String(), []string{"uid"})
		if err != nil {
			return fmt.Errorf("resolve memberUid: %w", err)
		}
		for _, e := range entries {
			dn, ok := normDN(e.DN)
			if !ok {
				continue
			}
			for _, u := range e.GetEqualFoldAttributeValues("uid") {
				if uids[u] {
					out[u] = dn
				}
			}
		}
		return nil
	}
	for u := range uids {
		batch = append(batch, u)
		if len(batch) == uidBatch {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// normDN is a DN as groups are keyed: parsed and printed in one form, in
// lower case (the usual attributes, cn, uid, ou, dc, compare without
// case).
func normDN(s string) (string, bool) {
	d, err := ldap.ParseDN(strings.TrimSpace(s))
	if err != nil || len(d.RDNs) == 0 {
		return "", false
	}
	return strings.ToLower(d.String()), true
}

// unwrapLDAP keeps an LDAP error to its one line: go-ldap's errors carry
// the result code and the server's text.
func unwrapLDAP(err error) error {
	var le *ldap.Error
	if errors.As(err, &le) && le.Err != nil {
		msg := le.Err.Error()
		if text, ok := ldap.LDAPResultCodeMap[le.ResultCode]; ok && le.ResultCode != ldap.ErrorNetwork {
			msg = text + ": " + msg
		}
		return errors.New(strings.ReplaceAll(msg, "\n", " "))
	}
	return err
}
