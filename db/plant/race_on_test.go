//go:build race

package plant

// raceEnabled: the race detector slows the station side ~10x; scale tests shrink.
const raceEnabled = true
