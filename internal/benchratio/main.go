// Command benchratio reads `go test -bench` output on stdin and prints, for
// every benchmark that has a baseline sub-benchmark ("raw", or "baseline")
// beside others (flux, flux-snapshots, ...), the median ns/op of each and
// its throughput ratio to the baseline (baseline ns/op ÷ its ns/op: 1.0 is
// as fast as the raw driver, 0.8 is 80% of its throughput, 0.5 takes twice
// the time). Run benchmarks with -count >= 5 on a noisy machine.
//
//	go test -run '^$' -bench . -count 6 ./sqlitestore | go run ./internal/benchratio
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

var line = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op`)

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchratio:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	samples := map[string][]float64{}
	var order []string
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		text := sc.Text()
		fmt.Fprintln(out, text)
		m := line.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			continue
		}
		if _, seen := samples[m[1]]; !seen {
			order = append(order, m[1])
		}
		samples[m[1]] = append(samples[m[1]], v)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	groups := map[string][]string{}
	var groupOrder []string
	for _, name := range order {
		i := strings.LastIndex(name, "/")
		if i < 0 {
			continue
		}
		g := name[:i]
		if _, ok := groups[g]; !ok {
			groupOrder = append(groupOrder, g)
		}
		groups[g] = append(groups[g], name[i+1:])
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(out)
	fmt.Fprintln(tw, "benchmark\tvariant\truns\tmedian ns/op\tthroughput vs raw\t")
	for _, g := range groupOrder {
		raw, ok := samples[g+"/raw"]
		if !ok {
			if raw, ok = samples[g+"/baseline"]; !ok {
				continue
			}
		}
		rawMed := median(raw)
		for _, v := range groups[g] {
			s := samples[g+"/"+v]
			med := median(s)
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%sx\t\n", g, v, len(s), med, ratio(rawMed/med))
		}
	}
	return tw.Flush()
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ratio prints two decimals, or three significant digits for small ratios.
func ratio(r float64) string {
	if r < 0.1 {
		return strconv.FormatFloat(r, 'g', 3, 64)
	}
	return strconv.FormatFloat(r, 'f', 2, 64)
}
