package main

// The chart as a PNG: chart.go's layout drawn pixel by pixel with
// image/png, and text in a 5×7 bitmap font (the standard library has no
// font renderer).

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"strings"
	"unicode"
)

// fontScale enlarges the 5×7 font: each dot is this many pixels.
const fontScale = 2

// renderPNG draws the chart as a chartWidth×chartHeight PNG.
func renderPNG(rep *simReport) ([]byte, error) {
	c := newChart(rep)
	img := image.NewRGBA(image.Rect(0, 0, chartWidth, chartHeight))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	text(img, chartWidth/2, 14, c.title, colorText, 0)
	for _, t := range c.yTicks {
		line(img, plotLeft, t.pos, plotRight, t.pos, 1, colorGrid)
		text(img, plotLeft-8, int(t.pos)-7, t.label, colorText, 1)
	}
	for _, t := range c.xTicks {
		line(img, t.pos, plotTop, t.pos, plotBottom, 1, colorGrid)
		text(img, int(t.pos), plotBottom+10, t.label, colorText, 0)
	}
	line(img, plotLeft, plotBottom, plotRight, plotBottom, 2, colorAxis)
	line(img, plotLeft, plotTop, plotLeft, plotBottom, 2, colorAxis)
	text(img, (plotLeft+plotRight)/2, plotBottom+38, "simulated time", colorText, 0)
	text(img, plotLeft-60, plotTop-26, "deliveries", colorText, -1)
	for _, l := range c.lines {
		for i := 1; i < len(l.points); i++ {
			a, b := l.points[i-1], l.points[i]
			line(img, a[0], a[1], b[0], b[1], l.width, l.color)
		}
	}
	bw, bh := legendBox(c.lines, 6*fontScale)
	fill(img, image.Rect(legendX-8, legendY-16, legendX-8+bw, legendY-16+bh), colorGrid)
	fill(img, image.Rect(legendX-7, legendY-15, legendX-9+bw, legendY-17+bh), color.RGBA{0xff, 0xff, 0xff, 0xff})
	for i, l := range c.lines {
		x, y := legendX, legendY+i*legendRow
		line(img, float64(x), float64(y-4), float64(x+16), float64(y-4), 4, l.color)
		text(img, x+24, y-10, l.label, colorText, -1)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// fill paints r with c.
func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

// line draws a straight line w pixels wide from (x0,y0) to (x1,y1).
func line(img *image.RGBA, x0, y0, x1, y1 float64, w int, c color.RGBA) {
	steps := int(math.Max(math.Abs(x1-x0), math.Abs(y1-y0))) + 1
	for i := 0; i <= steps; i++ {
		f := float64(i) / float64(steps)
		x, y := int(math.Round(x0+(x1-x0)*f)), int(math.Round(y0+(y1-y0)*f))
		for dx := -(w - 1) / 2; dx <= w/2; dx++ {
			for dy := -(w - 1) / 2; dy <= w/2; dy++ {
				img.SetRGBA(x+dx, y+dy, c)
			}
		}
	}
}

// text draws s with its top at y: centred on x (align 0), ending at x (1)
// or starting at x (-1). Capitals without a glyph of their own are drawn
// as small letters; other runes without one as a space.
func text(img *image.RGBA, x, y int, s string, c color.RGBA, align int) {
	const adv = 6 * fontScale
	width := len([]rune(s))*adv - fontScale
	switch align {
	case 0:
		x -= width / 2
	case 1:
		x -= width
	}
	for _, r := range s {
		g, ok := glyphs[r]
		if !ok {
			g = glyphs[unicode.ToLower(r)]
		}
		for row, bits := range strings.Fields(g) {
			for col, dot := range bits {
				if dot != '#' {
					continue
				}
				for i := range fontScale * fontScale {
					img.SetRGBA(x+col*fontScale+i%fontScale, y+row*fontScale+i/fontScale, c)
				}
			}
		}
		x += adv
	}
}

// glyphs is a 5×7 font: seven rows of five dots, top to bottom, and two
// more below the line for descenders.
var glyphs = map[rune]string{
	'0': ".###. #...# #..## #.#.# ##..# #...# .###.",
	'1': "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
	'2': ".###. #...# ....# ...#. ..#.. .#... #####",
	'3': "##### ...#. ..#.. ...#. ....# #...# .###.",
	'4': "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
	'5': "##### #.... ####. ....# ....# #...# .###.",
	'6': "..##. .#... #.... ####. #...# #...# .###.",
	'7': "##### ....# ...#. ..#.. .#... .#... .#...",
	'8': ".###. #...# #...# .###. #...# #...# .###.",
	'9': ".###. #...# #...# .#### ....# ...#. .##..",
	'M': "#...# ##.## #.#.# #.#.# #...# #...# #...#",
	'a': "..... ..... .###. ....# .#### #...# .####",
	'b': "#.... #.... #.##. ##..# #...# #...# ####.",
	'c': "..... ..... .###. #.... #.... #...# .###.",
	'd': "....# ....# .##.# #..## #...# #...# .####",
	'e': "..... ..... .###. #...# ##### #.... .###.",
	'f': "..##. .#..# .#... ###.. .#... .#... .#...",
	'g': "..... ..... .#### #...# #...# #...# .#### ....# .###.",
	'h': "#.... #.... #.##. ##..# #...# #...# #...#",
	'i': "..#.. ..... .##.. ..#.. ..#.. ..#.. .###.",
	'j': "...#. ..... ..##. ...#. ...#. ...#. ...#. #..#. .##..",
	'k': "#.... #.... #..#. #.#.. ##... #.#.. #..#.",
	'l': ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
	'm': "..... ..... ##.#. #.#.# #.#.# #...# #...#",
	'n': "..... ..... #.##. ##..# #...# #...# #...#",
	'o': "..... ..... .###. #...# #...# #...# .###.",
	'p': "..... ..... ####. #...# #...# #...# ####. #.... #....",
	'q': "..... ..... .#### #...# #...# #...# .#### ....# ....#",
	'r': "..... ..... #.##. ##..# #.... #.... #....",
	's': "..... ..... .###. #.... .###. ....# ####.",
	't': ".#... .#... ###.. .#... .#... .#..# ..##.",
	'u': "..... ..... #...# #...# #...# #..## .##.#",
	'v': "..... ..... #...# #...# #...# .#.#. ..#..",
	'w': "..... ..... #...# #...# #.#.# #.#.# .#.#.",
	'x': "..... ..... #...# .#.#. ..#.. .#.#. #...#",
	'y': "..... ..... #...# #...# #...# #...# .#### ....# .###.",
	'z': "..... ..... ##### ...#. ..#.. .#... #####",
	',': "..... ..... ..... ..... ..... .##.. ..#.. .#...",
	'.': "..... ..... ..... ..... ..... .##.. .##..",
	':': "..... .##.. .##.. ..... .##.. .##.. .....",
	'-': "..... ..... ..... ##### ..... ..... .....",
	'+': "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
	'(': "...#. ..#.. .#... .#... .#... ..#.. ...#.",
	')': ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
	'/': "..... ....# ...#. ..#.. .#... #.... .....",
	'=': "..... ..... ##### ..... ##### ..... .....",
}
