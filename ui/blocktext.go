package ui

import "strings"

// blockFont holds the letters of the state words in block letters, three
// lines high, readable from two metres on a bench screen.
var blockFont = map[rune][3]string{
	'A': {"▄▀▀▄", "█▀▀█", "▀  ▀"},
	'B': {"█▀▀▄", "█▀▀▄", "▀▀▀ "},
	'D': {"█▀▀▄", "█  █", "▀▀▀ "},
	'E': {"█▀▀▀", "█▀▀ ", "▀▀▀▀"},
	'F': {"█▀▀▀", "█▀▀ ", "▀   "},
	'I': {"▀█▀", " █ ", "▀▀▀"},
	'L': {"█   ", "█   ", "▀▀▀▀"},
	'N': {"█▄ █", "█ ▀█", "▀  ▀"},
	'P': {"█▀▀▄", "█▀▀ ", "▀   "},
	'R': {"█▀▀▄", "█▀▀▄", "▀  ▀"},
	'S': {"▄▀▀▀", " ▀▀▄", "▀▀▀ "},
	'T': {"▀█▀", " █ ", " ▀ "},
	'U': {"█  █", "█  █", " ▀▀ "},
	'W': {"█  █", "█▄▄█", "▀  ▀"},
	' ': {"  ", "  ", "  "},
}

// blockText renders s (letters of blockFont) as three lines of block
// letters; a letter the font lacks is drawn as itself.
func blockText(s string) []string {
	var out [3]strings.Builder
	for i, r := range s {
		g, ok := blockFont[r]
		if !ok {
			g = [3]string{string(r), " ", " "}
		}
		for l := range 3 {
			if i > 0 {
				out[l].WriteByte(' ')
			}
			out[l].WriteString(g[l])
		}
	}
	return []string{out[0].String(), out[1].String(), out[2].String()}
}
