package main

import (
	"bufio"
	"bytes"
	"os"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// machineBusy returns the busy and total CPU time of the whole machine in
// clock ticks (first line of /proc/stat), or zeros where unavailable. The
// difference to this process's CPU shows how much the neighbours took.
func machineBusy() (busy, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return 0, 0
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// processCPU is the CPU time this process has used, user and system, in
// all threads: server and load generator together.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heapObjectsMetric is the bytes of live and not-yet-swept heap objects, the
// runtime/metrics twin of MemStats.HeapAlloc; reading it does not stop the
// world, so sampling it often doesn't disturb the load.
const heapObjectsMetric = "/memory/classes/heap/objects:bytes"

// heapSampler records the peak heap of the whole process (server and load
// generator alike) by sampling every interval.
type heapSampler struct {
	peak    atomic.Uint64 // since the last reset
	overall atomic.Uint64 // since start
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startHeapSampler(interval time.Duration) *heapSampler {
	h := &heapSampler{stop: make(chan struct{})}
	h.wg.Go(func() {
		s := []metrics.Sample{{Name: heapObjectsMetric}}
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			h.observe(s)
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	})
	return h
}

func (h *heapSampler) observe(s []metrics.Sample) {
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	v := s[0].Value.Uint64()
	for _, a := range []*atomic.Uint64{&h.peak, &h.overall} {
		for {
			cur := a.Load()
			if v <= cur || a.CompareAndSwap(cur, v) {
				break
			}
		}
	}
}

// reset starts a new per-endpoint peak and returns the previous one.
func (h *heapSampler) reset() uint64 {
	h.observe([]metrics.Sample{{Name: heapObjectsMetric}})
	return h.peak.Swap(0)
}

func (h *heapSampler) close() {
	close(h.stop)
	h.wg.Wait()
}

// procStatus returns the peak and current resident set size of this process
// in bytes (VmHWM, VmRSS of /proc/self/status); zero where not available.
func procStatus() (hwm, rss uint64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Bytes()
		name, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		var dst *uint64
		switch string(name) {
		case "VmHWM":
			dst = &hwm
		case "VmRSS":
			dst = &rss
		default:
			continue
		}
		f := bytes.Fields(rest) // "12345", "kB"
		if len(f) == 2 && string(f[1]) == "kB" {
			if n, err := strconv.ParseUint(string(f[0]), 10, 64); err == nil {
				*dst = n << 10
			}
		}
	}
	return hwm, rss
}

// procThreads is the number of OS threads of this process (Threads of
// /proc/self/status), 0 where not available.
func procThreads() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte("Threads:")); ok {
			n, _ := strconv.Atoi(string(bytes.TrimSpace(rest)))
			return n
		}
	}
	return 0
}
