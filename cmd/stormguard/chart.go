package main

// The simulation's chart: cumulative deliveries over simulated time, one
// step line per scenario, with axes, tick labels and a legend. One layout
// (chart), drawn as SVG text or, with chartpng.go's pixels and bitmap
// font, as a PNG. Standard library only.

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"image/color"
	"math"
	"strconv"
	"strings"
	"time"
)

// The chart's size in pixels, for both formats.
const (
	chartWidth  = 960
	chartHeight = 540
)

// The plot area inside the chart.
const (
	plotLeft   = 100
	plotRight  = chartWidth - 30
	plotTop    = 60
	plotBottom = chartHeight - 70
)

// seriesColors are the scenarios' colours, in report order: unprotected,
// count rule only, stormguard.
var seriesColors = []color.RGBA{{0xd6, 0x27, 0x28, 0xff}, {0xff, 0x7f, 0x0e, 0xff}, {0x1f, 0x9e, 0x3a, 0xff}}

var (
	colorGrid = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
	colorAxis = color.RGBA{0x33, 0x33, 0x33, 0xff}
	colorText = color.RGBA{0x22, 0x22, 0x22, 0xff}
)

// tick is one labelled position on an axis, in pixels.
type tick struct {
	pos   float64
	label string
}

// chartLine is one scenario's step line, in pixels.
type chartLine struct {
	id, label string
	color     color.RGBA
	width     int
	points    [][2]float64
}

type chart struct {
	title          string
	xTicks, yTicks []tick
	lines          []chartLine
}

// newChart lays out rep's series: x from 0 to the end of the storm, y from
// 0 to a round number above the largest total.
func newChart(rep *simReport) chart {
	span := rep.span
	var top int64 = 1
	for _, s := range rep.Scenarios {
		if n := len(s.Series); n > 0 {
			span = max(span, time.Duration(s.Series[n-1].Seconds*float64(time.Second)))
			top = max(top, s.Series[n-1].Deliveries)
		}
	}
	if span <= 0 {
		span = time.Minute
	}
	ystep := niceStep(float64(top) / 5)
	ymax := math.Ceil(float64(top)/ystep) * ystep
	xs := float64(plotRight-plotLeft) / span.Seconds()
	ys := float64(plotBottom-plotTop) / ymax
	px := func(sec float64) float64 { return plotLeft + sec*xs }
	py := func(v int64) float64 { return plotBottom - float64(v)*ys }

	c := chart{title: fmt.Sprintf("cumulative deliveries, %d reply-alls to %s (%s, %d %s)",
		rep.Replies, thousands(int64(rep.Audience)), rep.Curve, rep.Nodes, plural(rep.Nodes, "node"))}
	xstep := timeStep(span)
	for t := time.Duration(0); t <= span; t += xstep {
		c.xTicks = append(c.xTicks, tick{px(t.Seconds()), shortDuration(t)})
	}
	for v := 0.0; v <= ymax+ystep/2; v += ystep {
		c.yTicks = append(c.yTicks, tick{py(int64(v)), shortCount(int64(v))})
	}
	for i, s := range rep.Scenarios {
		l := chartLine{id: s.ID, label: s.Name + ": " + thousands(s.Deliveries), color: seriesColors[i%len(seriesColors)], width: 2}
		if i == len(rep.Scenarios)-1 {
			l.width = 3 // stormguard's line, drawn last, over the others
		}
		var last int64
		for j, p := range s.Series {
			if j > 0 {
				l.points = append(l.points, [2]float64{px(p.Seconds), py(last)})
			}
			l.points = append(l.points, [2]float64{px(p.Seconds), py(p.Deliveries)})
			last = p.Deliveries
		}
		l.points = append(l.points, [2]float64{px(span.Seconds()), py(last)})
		c.lines = append(c.lines, l)
	}
	return c
}

// niceStep is the 1, 2 or 5 times a power of ten at or above raw, at least 1.
func niceStep(raw float64) float64 {
	if raw <= 1 {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

// timeStep is the first round step that puts at most 8 ticks on span.
func timeStep(span time.Duration) time.Duration {
	for _, s := range []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second,
		30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute,
		20 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour} {
		if span/s <= 8 {
			return s
		}
	}
	return span / 8
}

// shortDuration is a tick label: 0, 30s, 10m, 1h10m.
func shortDuration(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// shortCount is a tick label: 0, 500k, 1.5M, 20M.
func shortCount(v int64) string {
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	switch {
	case v >= 1000000:
		return f(float64(v)/1e6) + "M"
	case v >= 1000:
		return f(float64(v)/1e3) + "k"
	}
	return strconv.FormatInt(v, 10)
}

// renderSVG draws the chart as an SVG document.
func renderSVG(rep *simReport) ([]byte, error) {
	c := newChart(rep)
	var b bytes.Buffer
	esc := func(s string) string {
		var e bytes.Buffer
		_ = xml.EscapeText(&e, []byte(s))
		return e.String()
	}
	hex := func(c color.RGBA) string { return fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B) }
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="13">`+"\n",
		chartWidth, chartHeight, chartWidth, chartHeight)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", chartWidth, chartHeight)
	fmt.Fprintf(&b, `<text x="%d" y="32" font-size="16" text-anchor="middle">%s</text>`+"\n", chartWidth/2, esc(c.title))
	fmt.Fprintf(&b, `<g class="grid" stroke="%s" stroke-width="1">`+"\n", hex(colorGrid))
	for _, t := range c.yTicks {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`+"\n", plotLeft, t.pos, plotRight, t.pos)
	}
	for _, t := range c.xTicks {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d"/>`+"\n", t.pos, plotTop, t.pos, plotBottom)
	}
	b.WriteString("</g>\n")
	fmt.Fprintf(&b, `<g class="axes" stroke="%s" stroke-width="1.5">`+"\n"+
		`<line x1="%d" y1="%d" x2="%d" y2="%d"/>`+"\n"+`<line x1="%d" y1="%d" x2="%d" y2="%d"/>`+"\n</g>\n",
		hex(colorAxis), plotLeft, plotBottom, plotRight, plotBottom, plotLeft, plotTop, plotLeft, plotBottom)
	fmt.Fprintf(&b, `<g class="ticks" fill="%s">`+"\n", hex(colorText))
	for _, t := range c.yTicks {
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", plotLeft-8, t.pos+4, esc(t.label))
	}
	for _, t := range c.xTicks {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", t.pos, plotBottom+20, esc(t.label))
	}
	b.WriteString("</g>\n")
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">simulated time</text>`+"\n", (plotLeft+plotRight)/2, plotBottom+48)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="start">deliveries</text>`+"\n", plotLeft-60, plotTop-12)
	for _, l := range c.lines {
		pts := make([]string, len(l.points))
		for i, p := range l.points {
			pts[i] = fmt.Sprintf("%.1f,%.1f", p[0], p[1])
		}
		fmt.Fprintf(&b, `<polyline class="series" data-scenario="%s" fill="none" stroke="%s" stroke-width="%d" stroke-linejoin="round" points="%s"><title>%s</title></polyline>`+"\n",
			esc(l.id), hex(l.color), l.width, strings.Join(pts, " "), esc(l.label))
	}
	b.WriteString(`<g class="legend">` + "\n")
	bw, bh := legendBox(c.lines, 7.5)
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#ffffff" fill-opacity="0.9" stroke="%s"/>`+"\n",
		legendX-8, legendY-16, bw, bh, hex(colorGrid))
	for i, l := range c.lines {
		x, y := legendX, legendY+i*legendRow
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="16" height="4" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
			x, y-5, hex(l.color), x+24, y, esc(l.label))
	}
	b.WriteString("</g>\n</svg>\n")
	return b.Bytes(), nil
}

// The legend's place: top left of the plot area.
const (
	legendX   = plotLeft + 16
	legendY   = plotTop + 22
	legendRow = 22
)

// legendBox is the size of the legend's background for text charW pixels
// a character wide.
func legendBox(lines []chartLine, charW float64) (w, h int) {
	longest := 0
	for _, l := range lines {
		longest = max(longest, len([]rune(l.label)))
	}
	return 24 + int(math.Ceil(float64(longest)*charW)) + 16, len(lines)*legendRow + 4
}
