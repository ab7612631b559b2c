package sim

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"image/png"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

// svgDoc is what TestSVG reads from an SVG: the root's attributes, the
// texts, and the colour of each stroked path with more than minSegments
// segments (the series, in drawing order).
type svgDoc struct {
	root   xml.StartElement
	texts  []string
	series []string
}

func readSVG(t *testing.T, raw []byte, minSegments int) svgDoc {
	t.Helper()
	var doc svgDoc
	dec := xml.NewDecoder(bytes.NewReader(raw))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return doc
		}
		if err != nil {
			t.Fatalf("SVG is not XML: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if doc.root.Name.Local == "" {
			doc.root = se
		}
		attr := map[string]string{}
		for _, a := range se.Attr {
			attr[a.Name.Local] = a.Value
		}
		switch se.Name.Local {
		case "path":
			_, stroke, ok := strings.Cut(attr["style"], "stroke:")
			if ok && strings.Count(attr["d"], "L") > minSegments {
				doc.series = append(doc.series, strings.ToLower(strings.SplitN(stroke, ";", 2)[0]))
			}
		case "text":
			var s string
			if err := dec.DecodeElement(&s, &se); err != nil {
				t.Fatal(err)
			}
			doc.texts = append(doc.texts, s)
		}
	}
}

// TestSVG: the SVG is XML of the chart's size with the three series in
// their colours, the axes' ticks and labels, the title and the legend.
func TestSVG(t *testing.T) {
	rep := run(t, Defaults())
	raw, err := SVG(rep)
	if err != nil {
		t.Fatal(err)
	}
	doc := readSVG(t, raw, 80) // each series is a step line through 81 points
	attr := map[string]string{}
	for _, a := range doc.root.Attr {
		attr[a.Name.Local] = a.Value
	}
	if doc.root.Name.Space != "http://www.w3.org/2000/svg" || doc.root.Name.Local != "svg" || attr["viewBox"] != "0 0 720 405" {
		t.Errorf("root %v %v; want an svg of 720×405 pt (960×540 px)", doc.root.Name, attr)
	}
	var want []string
	for _, c := range seriesColors {
		want = append(want, fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B))
	}
	if !slices.Equal(doc.series, want) {
		t.Errorf("series drawn in %q, want %q (unprotected, count rule only, stormguard)", doc.series, want)
	}
	for _, want := range []string{"0", "20M", "80M", "10m", "1h", "1h10m", "simulated time", "deliveries",
		"cumulative deliveries, 80 reply-alls to 850,000 (burst, 1 node)",
		"unprotected: 68,850,000", "count rule only: 9,350,000", "stormguard: 1,700,000"} {
		if !slices.Contains(doc.texts, want) {
			t.Errorf("SVG has no text %q (title, ticks, axes, legend): %q", want, doc.texts)
		}
	}
	if slices.Contains(doc.texts, "90M") || slices.Contains(doc.texts, "1h20m") {
		t.Errorf("ticks beyond the axes: %q", doc.texts)
	}
}

// TestPNG: the PNG decodes, has the chart's size, and shows each series'
// colour.
func TestPNG(t *testing.T) {
	raw, err := PNG(run(t, Defaults()))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("PNG: %v", err)
	}
	b := img.Bounds()
	if b.Dx() != ChartWidth || b.Dy() != ChartHeight {
		t.Fatalf("PNG is %dx%d, want %dx%d", b.Dx(), b.Dy(), ChartWidth, ChartHeight)
	}
	for i, c := range seriesColors {
		found := false
		for y := b.Min.Y; y < b.Max.Y && !found; y++ {
			for x := b.Min.X; x < b.Max.X && !found; x++ {
				r, g, bl, _ := img.At(x, y).RGBA()
				found = uint8(r>>8) == c.R && uint8(g>>8) == c.G && uint8(bl>>8) == c.B
			}
		}
		if !found {
			t.Errorf("PNG has no pixel of series %d's colour", i)
		}
	}
}

// TestChartEmptyStorm: a storm of no replies over no time still draws.
func TestChartEmptyStorm(t *testing.T) {
	c := Defaults()
	c.Replies, c.Duration = 0, 0
	rep := run(t, c)
	for name, render := range map[string]func(*Report) ([]byte, error){"svg": SVG, "png": PNG} {
		if b, err := render(rep); err != nil || len(b) == 0 {
			t.Errorf("%s: %d bytes, %v", name, len(b), err)
		}
	}
}

func TestTickLabels(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{shortDuration(0), "0"}, {shortDuration(30 * time.Second), "30s"}, {shortDuration(10 * time.Minute), "10m"},
		{shortDuration(time.Hour), "1h"}, {shortDuration(70 * time.Minute), "1h10m"}, {shortDuration(599999 * time.Millisecond), "10m"},
		{shortCount(0), "0"}, {shortCount(500), "500"}, {shortCount(500000), "500k"}, {shortCount(1500000), "1.5M"}, {shortCount(20000000), "20M"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	if got := timeStep(76 * time.Minute); got != 10*time.Minute {
		t.Errorf("timeStep(76m) = %s, want 10m", got)
	}
	if got := niceStep(68850000.0 / 5); got != 20000000 {
		t.Errorf("niceStep = %v, want 2e7", got)
	}
}
