package sim

// The report's chart: cumulative deliveries over simulated time, one step
// line per scenario, with a grid, tick labels and a legend, drawn by
// gonum/plot as SVG (vgsvg) or PNG (vgimg).

import (
	"bytes"
	"fmt"
	"image/color"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// The chart's size in pixels at chartDPI: the PNG's size, and the SVG's.
const (
	ChartWidth  = 960
	ChartHeight = 540
	chartDPI    = 96
)

// seriesColors are the scenarios' colours, in report order: unprotected,
// count rule only, stormguard.
var seriesColors = []color.RGBA{{0xd6, 0x27, 0x28, 0xff}, {0xff, 0x7f, 0x0e, 0xff}, {0x1f, 0x9e, 0x3a, 0xff}}

var colorGrid = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}

// chartFont is the chart's typeface, from gonum/plot's own font cache.
var chartFont = font.Font{Typeface: "Liberation", Variant: "Sans"}

// SVG draws r's chart as an SVG document.
func SVG(r *Report) ([]byte, error) {
	return render(r, vgsvg.New(pixels(ChartWidth), pixels(ChartHeight)))
}

// PNG draws r's chart as a ChartWidth×ChartHeight PNG.
func PNG(r *Report) ([]byte, error) {
	c := vgimg.NewWith(vgimg.UseWH(pixels(ChartWidth), pixels(ChartHeight)), vgimg.UseDPI(chartDPI))
	return render(r, vgimg.PngCanvas{Canvas: c})
}

// pixels is n pixels at chartDPI.
func pixels(n int) vg.Length { return vg.Length(n) * vg.Inch / chartDPI }

// render draws r's chart on c and returns what c writes.
func render(r *Report, c interface {
	vg.CanvasSizer
	io.WriterTo
}) ([]byte, error) {
	p, err := newPlot(r)
	if err != nil {
		return nil, fmt.Errorf("sim: chart: %w", err)
	}
	dc := draw.New(c)
	dc.SetColor(color.White) // the margin too: an SVG is transparent where nothing is drawn
	dc.Fill(dc.Rectangle.Path())
	m := vg.Points(12)
	p.Draw(draw.Crop(dc, m, -2*m, m, -m))
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return nil, fmt.Errorf("sim: chart: %w", err)
	}
	return b.Bytes(), nil
}

// newPlot lays out r's series: x from 0 to the end of the storm, y from 0
// to a round number above the largest total.
func newPlot(r *Report) (*plot.Plot, error) {
	span := r.Span
	var top int64 = 1
	for _, s := range r.Scenarios {
		if n := len(s.Series); n > 0 {
			span = max(span, time.Duration(s.Series[n-1].Seconds*float64(time.Second)))
			top = max(top, s.Series[n-1].Deliveries)
		}
	}
	if span <= 0 {
		span = time.Minute
	}
	ystep := niceStep(float64(top) / 5)

	p := plot.New()
	p.Title.Text = fmt.Sprintf("cumulative deliveries, %d reply-alls to %s (%s, %d %s)",
		r.Replies, thousands(int64(r.Audience)), r.Curve, r.Nodes, plural(r.Nodes, "node"))
	p.Title.TextStyle.Font = font.From(chartFont, 14)
	p.Title.Padding = vg.Points(8)
	p.X.Label.Text, p.Y.Label.Text = "simulated time", "deliveries"
	p.X.Min, p.X.Max = 0, span.Seconds()
	p.Y.Min, p.Y.Max = 0, math.Ceil(float64(top)/ystep)*ystep
	p.X.Tick.Marker = ticks(timeStep(span).Seconds(), func(v float64) string { return shortDuration(time.Duration(v * float64(time.Second))) })
	p.Y.Tick.Marker = ticks(ystep, func(v float64) string { return shortCount(int64(v)) })
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = font.From(chartFont, 12)
		a.Tick.Label.Font = font.From(chartFont, 10)
		a.Padding = 0
	}
	grid := plotter.NewGrid()
	grid.Vertical.Color, grid.Horizontal.Color = colorGrid, colorGrid
	grid.Vertical.Width, grid.Horizontal.Width = vg.Points(0.75), vg.Points(0.75)
	p.Add(grid)

	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(12), -vg.Points(10)
	p.Legend.TextStyle.Font = font.From(chartFont, 11)
	p.Legend.Padding = vg.Points(4)
	for i, s := range r.Scenarios {
		var xys plotter.XYs
		var last int64
		for _, pt := range s.Series {
			xys = append(xys, plotter.XY{X: pt.Seconds, Y: float64(pt.Deliveries)})
			last = pt.Deliveries
		}
		xys = append(xys, plotter.XY{X: span.Seconds(), Y: float64(last)})
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("series %s: %w", s.ID, err)
		}
		l.StepStyle = plotter.PostStep // a delivery lands when its message is accepted
		l.Color = seriesColors[i%len(seriesColors)]
		l.Width = vg.Points(1.5)
		if i == len(r.Scenarios)-1 {
			l.Width = vg.Points(2.25) // stormguard's line, drawn last, over the others
		}
		p.Add(l)
		p.Legend.Add(s.Name+": "+thousands(s.Deliveries), l)
	}
	return p, nil
}

// ticks marks every multiple of step in the axis' range, labelled by label.
func ticks(step float64, label func(float64) string) plot.Ticker {
	return plot.TickerFunc(func(lo, hi float64) []plot.Tick {
		var t []plot.Tick
		for i := math.Ceil(lo / step); i*step <= hi+step/1e6; i++ {
			t = append(t, plot.Tick{Value: i * step, Label: label(i * step)})
		}
		return t
	})
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
	d = d.Round(time.Second)
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
