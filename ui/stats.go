package ui

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// cycleBins are the upper bounds of the cycle-time histogram's bins.
var cycleBins = []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 20 * time.Second, time.Minute}

// statsLines renders the statistics panel in w×h cells: first-pass yield,
// devices per hour over the last 15 minutes and over the shift, a
// histogram of the cycle times of passed attempts, and the top five
// failure reasons of the shift (Pareto: count, share, cumulative share).
func (m BenchModel) statsLines(w, h int) []string {
	t := m.tally
	c := m.Counters()
	pct := func(v float64) string {
		if v < 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f%%", v)
	}
	rate15 := 0
	for _, at := range t.passTimes {
		if m.now.Sub(at) <= 15*time.Minute {
			rate15++
		}
	}
	shift := "—"
	if c.PerHour >= 0 {
		shift = fmt.Sprintf("%.1f", c.PerHour)
	}
	lines := []string{
		styleTitle.Render("Statistics this shift") + styleDim.Render("  (t hides)"),
		fmt.Sprintf("First-pass yield %s · attempt yield %s · devices/hour: last 15 min %d, shift %s", pct(c.FirstPass), pct(c.Yield), rate15*4, shift),
		"",
		styleTitle.Render("Cycle time of passed attempts"),
	}
	counts := make([]int, len(cycleBins)+1)
	for _, d := range t.cycles {
		i := sort.Search(len(cycleBins), func(i int) bool { return d <= cycleBins[i] })
		counts[i]++
	}
	most := 1
	for _, n := range counts {
		most = max(most, n)
	}
	barW := max(w-24, 4)
	for i, n := range counts {
		label := "> " + formatBin(cycleBins[len(cycleBins)-1])
		if i < len(cycleBins) {
			label = "≤ " + formatBin(cycleBins[i])
		}
		lines = append(lines, fmt.Sprintf("%7s %5d %s", label, n, styleOK.Render(strings.Repeat("█", n*barW/most))))
	}
	lines = append(lines, "", styleTitle.Render("Top failure reasons (Pareto)"))
	type reason struct {
		text string
		n    int
	}
	var rs []reason
	total := 0
	for k, n := range t.reasons {
		rs = append(rs, reason{k, n})
		total += n
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].n > rs[j].n || (rs[i].n == rs[j].n && rs[i].text < rs[j].text) })
	if len(rs) == 0 {
		lines = append(lines, styleDim.Render("no failure this shift"))
	}
	cum := 0
	for i, r := range rs {
		if i == 5 {
			break
		}
		cum += r.n
		lines = append(lines, fmt.Sprintf("%3d %4.0f%% %4.0f%%  %s", r.n, 100*float64(r.n)/float64(total), 100*float64(cum)/float64(total), Untrusted(r.text)))
	}
	for i := range lines {
		lines[i] = truncateCells(lines[i], w)
	}
	if len(lines) > h {
		lines = lines[:h]
	}
	for len(lines) < h {
		lines = append(lines, "")
	}
	return lines
}

func formatBin(d time.Duration) string {
	if d >= time.Minute {
		return fmt.Sprintf("%dm", int(d/time.Minute))
	}
	return fmt.Sprintf("%ds", int(d/time.Second))
}
