package admin

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/stormguard/stormguard/internal/text"
	"github.com/stormguard/stormguard/store"
)

// PostersAPI is the sender gate's allowed posters (gate.posters and the
// store's set, stormguard:posters with Redis): who may send to an audience
// of gate.min_audience or more.
type PostersAPI interface {
	// Posters reports every allowed poster, the config's and the store's,
	// with where each comes from.
	Posters(ctx context.Context) ([]PosterView, error)
	// AddPoster adds a sender, @domain or SASL login to the store's set.
	AddPoster(ctx context.Context, poster string) (PosterView, error)
	// DeletePoster removes one from the store's set and reports what is
	// left in force for it (From "config" when the config file still
	// names it, "" otherwise).
	DeletePoster(ctx context.Context, poster string) (PosterView, error)
}

// PosterView is one allowed poster and where it comes from.
type PosterView struct {
	Poster string   `json:"poster"`
	From   []string `json:"from,omitempty"` // config and/or the store backend (redis, memory)
}

// maxPoster bounds a poster as typed: an address is at most 254 bytes
// (RFC 5321's path less the brackets).
const maxPoster = 254

// CheckPoster checks a poster as an operator types it: a sender
// (user@domain), a domain (@domain) or a SASL login (no @, or one as the
// MTA passes it); one token without spaces, control characters, angle
// brackets, quotes or list separators, at most one @ with a domain after
// it.
func CheckPoster(poster string) error {
	p := strings.TrimSpace(poster)
	bad := func(why string) error {
		return badRequest("poster %q: %s; want a sender (user@example.org), a domain (@example.org) or a SASL login (jdoe)", text.Clean(poster, 80), why)
	}
	switch {
	case p == "":
		return bad("empty")
	case len(p) > maxPoster:
		return bad("longer than 254 characters")
	case strings.ContainsFunc(p, func(r rune) bool {
		return r <= ' ' || r >= 0x7f && r <= 0x9f || r == utf8.RuneError || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r)
	}):
		return bad("spaces, control or invisible characters")
	case strings.ContainsAny(p, "<>,;\"()[]\\"):
		return bad("brackets, quotes or separators")
	case strings.Count(p, "@") > 1:
		return bad("more than one @")
	case strings.HasSuffix(p, "@"), strings.Contains(p, "@."), strings.HasSuffix(p, "."):
		return bad("no domain after the @")
	}
	return nil
}

func normPoster(p string) string { return strings.ToLower(strings.TrimSpace(p)) }

func (a *Direct) Posters(ctx context.Context) ([]PosterView, error) {
	g, err := a.st.Globals(ctx)
	if err != nil {
		return nil, err
	}
	from := map[string][]string{}
	for _, p := range a.cfg.Posters {
		if p = normPoster(p); p != "" && !slices.Contains(from[p], "config") {
			from[p] = append(from[p], "config")
		}
	}
	for _, p := range g.Posters {
		from[p] = append(from[p], a.backend())
	}
	out := []PosterView{}
	for _, p := range slices.Sorted(maps.Keys(from)) {
		out = append(out, PosterView{Poster: p, From: from[p]})
	}
	return out, nil
}

func (a *Direct) AddPoster(ctx context.Context, poster string) (PosterView, error) {
	if err := CheckPoster(poster); err != nil {
		return PosterView{}, err
	}
	if err := a.st.AddPoster(ctx, poster); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return PosterView{}, badRequest("%s", text.OneLine(err))
		}
		return PosterView{}, err
	}
	a.settingsChanged(ctx)
	return a.poster(normPoster(poster), true), nil
}

func (a *Direct) DeletePoster(ctx context.Context, poster string) (PosterView, error) {
	if err := CheckPoster(poster); err != nil {
		return PosterView{}, err
	}
	p := normPoster(poster)
	removed, err := a.st.RemovePoster(ctx, p)
	if err != nil {
		return PosterView{}, err
	}
	if !removed {
		if v := a.poster(p, false); len(v.From) > 0 {
			return PosterView{}, notFound("poster %s: not in the %s store; it comes from the config file (gate.posters): remove it there", p, a.backend())
		}
		return PosterView{}, notFound("poster %s: not in the %s store", p, a.backend())
	}
	a.settingsChanged(ctx)
	return a.poster(p, false), nil
}

// poster is p's view: the config's and, when inStore, the store's.
func (a *Direct) poster(p string, inStore bool) PosterView {
	v := PosterView{Poster: p}
	if slices.ContainsFunc(a.cfg.Posters, func(c string) bool { return normPoster(c) == p }) {
		v.From = append(v.From, "config")
	}
	if inStore {
		v.From = append(v.From, a.backend())
	}
	return v
}

func (c *Client) Posters(ctx context.Context) ([]PosterView, error) {
	var out []PosterView
	err := c.do(ctx, http.MethodGet, "/admin/posters", nil, &out)
	return out, err
}

func (c *Client) AddPoster(ctx context.Context, poster string) (PosterView, error) {
	var out PosterView
	err := c.do(ctx, http.MethodPut, "/admin/posters/"+url.PathEscape(poster), nil, &out)
	return out, err
}

func (c *Client) DeletePoster(ctx context.Context, poster string) (PosterView, error) {
	var out PosterView
	err := c.do(ctx, http.MethodDelete, "/admin/posters/"+url.PathEscape(poster), nil, &out)
	return out, err
}

// handlePosters serves PostersAPI under /admin/posters.
func handlePosters(mux *http.ServeMux, api PostersAPI, reply func(http.ResponseWriter, any, error)) {
	mux.HandleFunc("GET /admin/posters", func(w http.ResponseWriter, r *http.Request) {
		v, err := api.Posters(r.Context())
		reply(w, v, err)
	})
	mux.HandleFunc("PUT /admin/posters/{poster}", func(w http.ResponseWriter, r *http.Request) {
		v, err := api.AddPoster(r.Context(), r.PathValue("poster"))
		reply(w, v, err)
	})
	mux.HandleFunc("DELETE /admin/posters/{poster}", func(w http.ResponseWriter, r *http.Request) {
		v, err := api.DeletePoster(r.Context(), r.PathValue("poster"))
		reply(w, v, err)
	})
}
