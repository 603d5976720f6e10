package ui

import (
	"bytes"
	"fmt"
	"image"
	_ "image/gif"  // channel icons come as GIF,
	_ "image/jpeg" // JPEG
	_ "image/png"  // or PNG
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"github.com/bbsim/bbsim/handset"
)

// iconCols and iconRows are the cells of a drawn icon: two pixels per cell vertically.
const (
	iconCols = 6
	iconRows = 3
)

// channelIcon draws a channel's unread icon until it is opened, then its read icon: the
// fetched image in half blocks when the terminal has colour, a clear glyph otherwise or
// when the icon did not load.
func channelIcon(c handset.Channel) []string {
	img, loaded := c.UnreadIcon, c.UnreadIconLoaded
	if c.Read {
		img, loaded = c.ReadIcon, c.ReadIconLoaded
	}
	if loaded && lipgloss.ColorProfile() != termenv.Ascii {
		if lines, ok := halfBlocks(img); ok {
			return lines
		}
	}
	if c.Read {
		return []string{"┌────┐", "│ [ ]│", "└────┘"}
	}
	return []string{"┏━━━━┓", "┃ [*]┃", "┗━━━━┛"}
}

// halfBlocks scales an image to iconCols×(2·iconRows) pixels and draws each pair of
// pixels as "▀" with the top pixel as foreground and the bottom one as background.
func halfBlocks(data []byte) ([]string, bool) {
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, false
	}
	b := img.Bounds()
	if b.Dx() == 0 || b.Dy() == 0 {
		return nil, false
	}
	px := func(x, y int) string {
		sx := b.Min.X + x*b.Dx()/iconCols
		sy := b.Min.Y + y*b.Dy()/(2*iconRows)
		r, g, bl, a := img.At(sx, sy).RGBA()
		if a < 0x8000 {
			return ""
		}
		return fmt.Sprintf("#%02x%02x%02x", r>>8, g>>8, bl>>8)
	}
	lines := make([]string, iconRows)
	for row := range iconRows {
		var sb strings.Builder
		for col := range iconCols {
			top, bottom := px(col, 2*row), px(col, 2*row+1)
			st := lipgloss.NewStyle()
			if top != "" {
				st = st.Foreground(lipgloss.Color(top))
			}
			if bottom != "" {
				st = st.Background(lipgloss.Color(bottom))
			}
			ch := "▀"
			if top == "" && bottom == "" {
				ch = " "
			}
			sb.WriteString(st.Render(ch))
		}
		lines[row] = sb.String()
	}
	return lines, true
}
