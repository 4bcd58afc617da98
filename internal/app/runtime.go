package app

import (
	"io/fs"
	"os"
	"runtime"
	"runtime/debug"
)

// Runtime is what TuneRuntime left the Go runtime with, for the startup log.
type Runtime struct {
	GOMAXPROCS int
	GOGC       int
	// MemoryLimit is the soft memory limit in bytes, 0 for none.
	MemoryLimit int64
	// MemoryLimitFrom says where it came from: "GOMEMLIMIT", "cgroup"
	// (MemoryLimitShare of the container's limit) or "" (none).
	MemoryLimitFrom string
}

// MemoryLimitShare is the part of the container's memory limit given to
// the Go runtime as its soft limit: the rest is for what the runtime does
// not count (SQLite's page cache, kernel socket buffers, the binary).
const MemoryLimitShare = 0.9

// TuneRuntime sets the scheduler and GC defaults of this server; a
// GOMAXPROCS, GOGC or GOMEMLIMIT in the environment wins over each. Call
// it from main, before serving. Each was measured with offload-bench
// -server child on 2 cores, at 50 clients with an instant upstream and at
// 5,000 clients with a 1 s upstream (README, "Performance").
//
// One spare P, only when no CPU quota holds GOMAXPROCS below the CPU count:
// a breakdown waits for its usage increment, whose group commit ends in
// fsync (synchronous=FULL), and a goroutine in a system call keeps its P
// until sysmon hands it off, 20 µs to 10 ms later, so on a small machine a
// P sits idle in fsync while handlers wait to run. Generate at 50 clients
// went from 2,893 to 3,731 req/s (median of 3) at the same CPU per
// request; reconcile and the 5,000-client run were unchanged. Setting
// GOMAXPROCS turns off the runtime's own updates of it, which matter under
// a container's CPU quota (a P beyond the quota gets the process
// throttled), so under a quota the runtime's default stays.
//
// GOGC 200: the live heap is a few MiB at low concurrency, and at the
// default 100 the collector runs thousands of times a second: generate at
// 50 clients used 228 µs of server CPU per request at 100, 195 at 200,
// 181 at 400. With thousands of requests waiting on the provider the live
// heap is ~40 KiB per request, and the heap peaks at (1 + GOGC/100) times
// that: at 5,000 in flight peak RSS was 600 MiB at 100, 850 at 200, 1.0 to
// 1.4 GiB at 400, for the same CPU per request (~230 µs). 200 keeps most of
// the CPU saving and stays within 2× the memory of a bare proxy.
//
// Memory limit: inside a container with a memory limit (cgroup v2
// memory.max, or v1 memory.limit_in_bytes), the runtime's soft limit is
// set to MemoryLimitShare of it, so that when thousands of requests wait
// on the provider the collector works harder as the limit nears instead of
// the heap growing until the kernel kills the process. GOMEMLIMIT (or
// GOMEMLIMIT=off) overrides it.
func TuneRuntime(getenv func(string) string) Runtime {
	return tuneRuntime(getenv, os.DirFS("/"))
}

// DefaultGOGC is the GC percentage TuneRuntime sets when GOGC is unset.
const DefaultGOGC = 200

func tuneRuntime(getenv func(string) string, root fs.FS) Runtime {
	if getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) >= runtime.NumCPU() {
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	}
	if getenv("GOGC") == "" {
		debug.SetGCPercent(DefaultGOGC)
	}
	limit, from := memoryLimit(getenv, root)
	if from == "cgroup" {
		debug.SetMemoryLimit(limit)
	}
	gogc := debug.SetGCPercent(-1)
	debug.SetGCPercent(gogc)
	return Runtime{GOMAXPROCS: runtime.GOMAXPROCS(0), GOGC: gogc, MemoryLimit: limit, MemoryLimitFrom: from}
}

// memoryLimit is the soft memory limit to run with and where it comes
// from: GOMEMLIMIT when set (the runtime has applied it already), else
// MemoryLimitShare of the cgroup's limit, else none.
func memoryLimit(getenv func(string) string, root fs.FS) (int64, string) {
	if getenv("GOMEMLIMIT") != "" {
		if l := debug.SetMemoryLimit(-1); l < 1<<62 {
			return l, "GOMEMLIMIT"
		}
		return 0, "GOMEMLIMIT" // "off"
	}
	if l, ok := cgroupMemoryLimit(root); ok {
		return int64(float64(l) * MemoryLimitShare), "cgroup"
	}
	return 0, ""
}
