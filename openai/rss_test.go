package openai

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload-app/offload/openai/openaitest"
)

// Environment of the hostile-upstream memory measurement.
const (
	envRSS      = "OFFLOAD_RSS_TEST"  // "1" runs TestHostileRSS
	envRSSChild = "OFFLOAD_RSS_CHILD" // set in the child: upstream URL
	envRSSMode  = "OFFLOAD_RSS_MODE"  // the child's hostile mode
)

const (
	rssRounds = 3
	rssLimit  = 150 << 20 // issue 10: 50 hostile answers stay under 150 MiB
)

// rssModes are the hostile answers of issue 10, 50 at once, and one flood
// of 500 that only the shared body budget bounds.
var rssModes = []struct {
	name        string
	resp        openaitest.Response
	concurrency int
}{
	{"normal", openaitest.Response{}, 50},
	{"header_11MB", openaitest.Response{HeaderBytes: 11 << 20}, 50},
	{"body_50MB", openaitest.Response{BodyBytes: 50 << 20}, 50},
	{"chunked_50MB", openaitest.Response{BodyBytes: 50 << 20, Chunked: true}, 50},
	{"error_50MB", openaitest.Response{Status: 500, BodyBytes: 50 << 20, Chunked: true}, 50},
	{"chunked_50MB_x500", openaitest.Response{BodyBytes: 50 << 20, Chunked: true}, 500},
}

// TestHostileRSS measures the peak RSS (VmHWM) of a process whose provider
// gets concurrent hostile answers, rssRounds times, and fails
// above rssLimit. The provider runs in a child process (this test binary
// again) so the fake upstream's memory is not counted. It takes a few
// seconds of both cores, so it runs only with OFFLOAD_RSS_TEST=1:
//
//	OFFLOAD_RSS_TEST=1 go test -run TestHostileRSS -v ./openai/
//
// GOGC in the environment reaches the child (the server runs with 400).
func TestHostileRSS(t *testing.T) {
	if url := os.Getenv(envRSSChild); url != "" {
		for _, m := range rssModes {
			if m.name == os.Getenv(envRSSMode) {
				rssChild(t, url, m.concurrency)
			}
		}
		return
	}
	if os.Getenv(envRSS) != "1" {
		t.Skip("set " + envRSS + "=1 to measure peak RSS under hostile upstream answers")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc/self/status (Linux)")
	}
	for _, m := range rssModes {
		mode := m.name
		t.Run(mode, func(t *testing.T) {
			srv := openaitest.NewServer()
			defer srv.Close()
			srv.Respond(func(openaitest.Request) openaitest.Response { return m.resp })
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHostileRSS$", "-test.v")
			cmd.Env = append(os.Environ(), envRSSChild+"="+srv.URL, envRSSMode+"="+mode)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			hwm, classes := parseChild(string(out))
			if hwm == 0 {
				t.Fatalf("no VmHWM in child output:\n%s", out)
			}
			t.Logf("%s: %d at once: peak RSS %.1f MiB, %d upstream requests, outcomes %s",
				mode, m.concurrency, float64(hwm)/(1<<20), srv.Count(), classes)
			if hwm > rssLimit {
				t.Errorf("%s: peak RSS %.1f MiB > %d MiB", mode, float64(hwm)/(1<<20), rssLimit>>20)
			}
		})
	}
}

func rssChild(t *testing.T, url string, concurrency int) {
	o := testOptions(url)
	o.Sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	o.MaxConns = concurrency
	p := newProvider(t, o)
	var (
		mu      sync.Mutex
		classes = map[string]int{}
	)
	for range rssRounds {
		var wg sync.WaitGroup
		for range concurrency {
			wg.Go(func() {
				_, err := p.Generate(context.Background(), testRequest())
				class := "ok"
				if err != nil {
					class = providerError(t, err).Class
				}
				mu.Lock()
				classes[class]++
				mu.Unlock()
			})
		}
		wg.Wait()
	}
	fmt.Printf("RSS_OUTCOMES %v\n", classes)
	fmt.Printf("RSS_HWM %d\n", vmHWM(t))
}

// vmHWM is the process's peak resident set size in bytes.
func vmHWM(t *testing.T) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}

func parseChild(out string) (hwm int64, classes string) {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "RSS_HWM "); ok {
			hwm, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
		if v, ok := strings.CutPrefix(l, "RSS_OUTCOMES "); ok {
			classes = v
		}
	}
	return hwm, classes
}
