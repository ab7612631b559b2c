package listsync

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// Maps reads list sizes from Postfix alias and virtual maps, dumped by
// Postfix's own postalias -s and postmap -s (so every map type Postfix
// reads works, hash, lmdb, cdb, texthash, ...).
//
// What is counted, per list (every key of the maps):
//
//   - a target that is itself a key (an alias or a virtual address, in
//     any of the maps) is expanded, recursively, each key once (cycles
//     end there);
//   - every other address is one mailbox, counted once however many
//     paths reach it (local names and addresses in alias_domains are the
//     same mailbox: bob, bob@example.org);
//   - :include:/file is read (one address per line or comma separated, #
//     comments) and expanded like an alias;
//   - a |command or /file target is one delivery and counts 1;
//   - \name is the mailbox name, not expanded further.
//
// Keys that are no list addresses are ignored: postalias's own "@" and
// YP_* entries, virtual alias domain lines (a key without @) and @domain
// catch-alls.
type Maps struct {
	cfg Config
}

// NewMaps is the source for cfg's alias and virtual maps.
func NewMaps(cfg Config) (*Maps, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Maps{cfg: cfg}, nil
}

func (s *Maps) Name() string {
	return "postfix maps " + strings.Join(append(append([]string{}, s.cfg.AliasMaps...), s.cfg.VirtualMaps...), ",")
}

// maxIncludeBytes bounds one :include: file.
const maxIncludeBytes = 16 << 20

// mapGraph is the maps read: key -> targets, all canonical.
type mapGraph struct {
	domain  string // the first alias domain: bare local names are its
	locals  map[string]bool
	nodes   map[string][]string
	lists   map[string][]string // node -> the list addresses it is known as
	skipped int
}

// Sizes implements Source.
func (s *Maps) Sizes(ctx context.Context) (map[string]int, Stats, error) {
	g := &mapGraph{nodes: map[string][]string{}, lists: map[string][]string{}, locals: map[string]bool{}}
	for _, d := range s.cfg.AliasDomains {
		d = strings.ToLower(strings.TrimSpace(d))
		g.locals[d] = true
		if g.domain == "" {
			g.domain = d
		}
	}
	for _, m := range s.cfg.AliasMaps {
		out, err := s.dump(ctx, "postalias", m)
		if err != nil {
			return nil, Stats{}, err
		}
		g.read(out, true)
	}
	for _, m := range s.cfg.VirtualMaps {
		out, err := s.dump(ctx, "postmap", m)
		if err != nil {
			return nil, Stats{}, err
		}
		g.read(out, false)
	}
	if err := g.includes(); err != nil {
		return nil, Stats{}, err
	}
	g.unescape()
	members := func(n string) ([]string, bool) {
		kids, ok := g.nodes[n]
		return kids, ok
	}
	sizes := map[string]int{}
	for node, addrs := range g.lists {
		n := expand(node, members)
		for _, a := range addrs {
			sizes[a] = max(sizes[a], n)
		}
	}
	return sizes, Stats{Lists: len(sizes), Skipped: g.skipped}, nil
}

// dump runs tool -s on one map: every key and value, one per line.
func (s *Maps) dump(ctx context.Context, tool, m string) ([]byte, error) {
	args := []string{"-s", m}
	if s.cfg.PostfixConfigDir != "" {
		args = append([]string{"-c", s.cfg.PostfixConfigDir}, args...)
	}
	path, err := exec.LookPath(tool)
	if err != nil {
		path = "/usr/sbin/" + tool // a non-login root shell may lack sbin
	}
	cmd := exec.CommandContext(ctx, path, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		why := lastLine(stderr.String())
		if why == "" {
			why = err.Error()
		}
		return nil, fmt.Errorf("%s -s %s: %s", tool, m, why)
	}
	return out, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// read adds one dumped map: "key: value" (postalias) or "key\tvalue"
// (postmap) lines.
func (g *mapGraph) read(dump []byte, alias bool) {
	sc := bufio.NewScanner(bytes.NewReader(dump))
	sc.Buffer(make([]byte, 64<<10), 64<<20) // a big list is one long line
	for sc.Scan() {
		line := sc.Text()
		key, value, ok := strings.Cut(line, "\t")
		if !ok {
			key, value, ok = strings.Cut(line, " ")
		}
		key = strings.TrimSuffix(strings.TrimSpace(key), ":")
		if !ok || key == "" {
			g.skipped++
			continue
		}
		if alias && (key == "@" || strings.HasPrefix(key, "YP_")) {
			continue // postalias's own entries
		}
		if !alias && (!strings.Contains(key, "@") || strings.HasPrefix(key, "@")) {
			continue // a virtual alias domain, or a catch-all
		}
		node, ok := g.canon(key)
		if !ok {
			g.skipped++
			continue
		}
		kids := g.targets(value)
		for i, k := range kids {
			if k == node { // "ops: bob, ops" (or \ops, which -s prints so): ops's own mailbox
				kids[i] = `\` + node
			}
		}
		g.nodes[node] = append(g.nodes[node], kids...)
		if alias {
			local, _, _ := strings.Cut(node, "@")
			for d := range g.locals {
				g.lists[node] = appendNew(g.lists[node], local+"@"+d)
			}
		} else {
			addr, _ := normAddr(key) // the list as mail reaches it, even in an alias domain
			g.lists[node] = appendNew(g.lists[node], addr)
		}
	}
}

func appendNew(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// canon is an address as a node: lower case; a bare local name, or an
// address in one of the alias domains, as name@ the first alias domain.
func (g *mapGraph) canon(a string) (string, bool) {
	a, ok := normAddr(a)
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(a, '@') // a quoted local part may hold one
	local, domain, at := a, "", i >= 0
	if at {
		local, domain = a[:i], a[i+1:]
	}
	if local == "" || (at && domain == "") || strings.HasSuffix(local, "@") {
		return "", false
	}
	if g.domain != "" && (!at || g.locals[domain]) {
		return local + "@" + g.domain, true
	}
	return a, true
}

// targets splits an alias or virtual value into node ids.
func (g *mapGraph) targets(value string) []string {
	var out []string
	for _, t := range splitTargets(value) {
		switch {
		case strings.HasPrefix(t, "|"):
			out = append(out, "pipe "+t)
		case strings.HasPrefix(strings.ToLower(t), ":include:"):
			out = append(out, "include "+strings.TrimSpace(t[len(":include:"):]))
		case strings.HasPrefix(t, "/"):
			out = append(out, "file "+t)
		case strings.HasPrefix(t, `\`):
			if c, ok := g.canon(t[1:]); ok {
				out = append(out, `\`+c)
			} else {
				g.skipped++
			}
		default:
			if c, ok := g.canon(t); ok {
				out = append(out, c)
			} else {
				g.skipped++
			}
		}
	}
	return out
}

// splitTargets splits on commas and white space outside double quotes;
// a target quoted whole ("|cmd arg") loses its quotes.
func splitTargets(v string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range v {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case !quoted && (r == ',' || r == ' ' || r == '\t' || r == '\r' || r == '\n'):
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	for i, t := range out {
		if len(t) >= 2 && t[0] == '"' && t[len(t)-1] == '"' {
			out[i] = t[1 : len(t)-1]
		}
	}
	return out
}

// includes reads every :include: file named, and the files they name,
// each once, as nodes.
func (g *mapGraph) includes() error {
	for {
		var todo []string
		for _, kids := range g.nodes {
			for _, k := range kids {
				if strings.HasPrefix(k, "include ") {
					if _, done := g.nodes[k]; !done {
						todo = append(todo, k)
					}
				}
			}
		}
		if len(todo) == 0 {
			return nil
		}
		for _, k := range todo {
			if _, done := g.nodes[k]; done {
				continue
			}
			path := strings.TrimPrefix(k, "include ")
			b, err := readLimited(path, maxIncludeBytes)
			if err != nil {
				return fmt.Errorf(":include:%s: %w", path, err)
			}
			var kids []string
			for line := range strings.Lines(string(b)) {
				if i := strings.IndexByte(line, '#'); i >= 0 && !strings.Contains(line[:i], `"`) {
					line = line[:i]
				}
				kids = append(kids, g.targets(line)...)
			}
			g.nodes[k] = kids
		}
	}
}

func readLimited(path string, limit int64) ([]byte, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, errors.New("not an absolute path")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return b, nil
}

// unescape turns \name into the mailbox name: the same leaf as name when
// name is no key, a leaf of its own (not expanded) when it is.
func (g *mapGraph) unescape() {
	for n, kids := range g.nodes {
		for i, k := range kids {
			if rest, ok := strings.CutPrefix(k, `\`); ok {
				if _, isKey := g.nodes[rest]; !isKey {
					kids[i] = rest
				}
			}
		}
		g.nodes[n] = kids
	}
}
