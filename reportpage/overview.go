package reportpage

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/internal/text"
)

// Range is one of the overview's time ranges.
type Range struct {
	Name string        // as in ?range=: 3h, 24h, 7d, 30d, 90d
	Span time.Duration // how far back
}

// Ranges are the overview's choices; report.history keeps 90 days by
// default, so the longest shows all of it.
var Ranges = []Range{
	{"3h", 3 * time.Hour}, {"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour},
	{"30d", 30 * 24 * time.Hour}, {"90d", 90 * 24 * time.Hour},
}

const defaultRange = "24h"

// hourlyUpTo: ranges up to this are charted per hour, longer ones per day.
const hourlyUpTo = 48 * time.Hour

func parseRange(s string) (Range, error) {
	if s == "" {
		s = defaultRange
	}
	for _, r := range Ranges {
		if r.Name == s {
			return r, nil
		}
	}
	return Range{}, fmt.Errorf("range %q: want one of 3h, 24h, 7d, 30d, 90d", text.Printable(s))
}

// Bucket is one hour or day of the charts. A storm counts in the bucket of
// its first block (StormAt), a near miss in that of the moment it reached
// the near-miss share (NearMissAt); a storm's refused replies and saved
// deliveries count where the storm does.
type Bucket struct {
	Start      time.Time `json:"-"`
	Label      string    `json:"label"`
	Storms     int       `json:"storms"`
	NearMisses int       `json:"near_misses"`
	Refused    int       `json:"refused"`
	Saved      int64     `json:"saved"`
}

// Overview is what the overview page and its CSV show.
type Overview struct {
	Range      Range
	Ranges     []Range
	From, To   time.Time
	PerHour    bool
	Buckets    []Bucket
	Rows       []admin.StormView // the table: the most recent TableRows, or all with All
	Total      int               // rows in the range
	All        bool              // the table shows every row of the range
	Storms     int
	NearMisses int
	Refused    int
	Saved      int64
}

// TableRows is how many rows the table shows unless asked for all: a
// browser lays out a table of thousands of rows for seconds, and the
// charts and totals count every row anyway.
const TableRows = 200

// Series is the charts' data, read by static/report.js from a JSON block.
type Series struct {
	PerHour bool     `json:"per_hour"`
	Buckets []Bucket `json:"buckets"`
}

func (o Overview) Series() Series { return Series{PerHour: o.PerHour, Buckets: o.Buckets} }

// Summarize builds the overview of rows (the history since now-r.Span)
// for range r.
func Summarize(rows []admin.StormView, r Range, now time.Time) Overview {
	now = now.UTC()
	o := Overview{Range: r, Ranges: Ranges, From: now.Add(-r.Span), To: now, PerHour: r.Span <= hourlyUpTo, Rows: rows}
	// The buckets cover the whole range: from the hour (or UTC day) the
	// range starts in to the one now is in.
	step := 24 * time.Hour
	if o.PerHour {
		step = time.Hour
	}
	first := o.From.Truncate(step) // UTC: Truncate works on absolute time, and days start at 00:00 UTC
	n := int(now.Truncate(step).Sub(first)/step) + 1
	o.Buckets = make([]Bucket, n)
	for i := range o.Buckets {
		b := &o.Buckets[i]
		b.Start = first.Add(time.Duration(i) * step)
		if o.PerHour {
			b.Label = b.Start.Format("01-02 15:00")
		} else {
			b.Label = b.Start.Format("2006-01-02")
		}
	}
	bucket := func(t *time.Time) *Bucket {
		if t == nil || t.Before(first) || t.After(now) {
			return nil
		}
		return &o.Buckets[min(int(t.Sub(first)/step), n-1)]
	}
	for _, v := range rows {
		o.Refused += v.Refused
		o.Saved += v.Saved
		if v.Kind == admin.KindStorm {
			o.Storms++
			if b := bucket(v.StormAt); b != nil {
				b.Storms++
				b.Refused += v.Refused
				b.Saved += v.Saved
			}
			continue
		}
		o.NearMisses++
		if b := bucket(v.NearMissAt); b != nil {
			b.NearMisses++
		}
	}
	o.Total = len(rows)
	return o
}

// table cuts the table to TableRows unless all.
func (o *Overview) table(all bool) {
	o.All = all || len(o.Rows) <= TableRows
	if !o.All {
		o.Rows = o.Rows[:TableRows]
	}
}

func (s *server) load(r *http.Request) (Overview, int, error) {
	rg, err := parseRange(r.URL.Query().Get("range"))
	if err != nil {
		return Overview{}, http.StatusBadRequest, err
	}
	now := s.now()
	rows, err := s.cfg.History.Storms(r.Context(), now.Add(-rg.Span), true, 0)
	if err != nil {
		return Overview{}, http.StatusInternalServerError, fmt.Errorf("cannot read the history: %s", text.OneLine(err))
	}
	o := Summarize(rows, rg, now)
	o.table(r.URL.Query().Get("rows") == "all")
	return o, http.StatusOK, nil
}

func (s *server) overview(w http.ResponseWriter, r *http.Request) {
	o, status, err := s.load(r)
	if err != nil {
		s.fail(w, r, status, text.Printable(err.Error()))
		return
	}
	s.render(w, r, http.StatusOK, "overview.html", "Reply-all storms", o)
}

// csvHeader are the columns of the overview's table, as the CSV has them.
var csvHeader = []string{"thread", "kind", "subject", "original_sender", "lists", "audience",
	"first_seen", "storm_at", "storm_rule", "near_miss_at", "accepted", "refused", "allowed", "saved", "state"}

// CSVRecord is row v as the CSV has it: sender text made text.Printable and
// defused against spreadsheet formulas.
func CSVRecord(v admin.StormView) []string {
	t := func(p *time.Time) string {
		if p == nil {
			return ""
		}
		return p.UTC().Format(time.RFC3339)
	}
	return []string{v.Thread, kindLabel(v.Kind), cell(v.Subject), cell(v.OriginalSender), cell(strings.Join(v.Lists, " ")),
		strconv.Itoa(v.Audience), v.FirstSeen.UTC().Format(time.RFC3339), t(v.StormAt), v.StormRule, t(v.NearMissAt),
		strconv.Itoa(v.Accepted), strconv.Itoa(v.Refused), strconv.Itoa(v.Allowed), strconv.FormatInt(v.Saved, 10), v.State}
}

// cell makes sender text safe for a spreadsheet: control characters
// escaped, and a leading = + - @ (a formula to Excel and LibreOffice)
// behind a quote.
func cell(s string) string {
	s = text.Printable(s)
	if s != "" && strings.ContainsRune("=+-@", rune(s[0])) {
		return "'" + s
	}
	return s
}

func (s *server) csv(w http.ResponseWriter, r *http.Request) {
	o, status, err := s.load(r)
	if err != nil {
		http.Error(w, text.Printable(err.Error()), status)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="stormguard-%s-%s.csv"`, o.Range.Name, o.To.Format("20060102T1504Z")))
	cw := csv.NewWriter(w)
	_ = cw.Write(csvHeader)
	for _, v := range o.Rows {
		_ = cw.Write(CSVRecord(v))
	}
	cw.Flush()
}
