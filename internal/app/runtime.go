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
// it from main, before serving. Measured with offload-bench -server child
// on 2 cores (README, "Performance").
//
// One spare P: the usage store's single writer spends most of its time in
// fsync (synchronous=FULL, once per group commit), and a goroutine in a
// system call keeps its P until sysmon hands it off, 20 µs to 10 ms later,
// so on a small machine a P sits idle in fsync while handlers wait to run.
// Setting GOMAXPROCS by hand turns off the runtime's own updates of it when
// a container's CPU limit changes while the process runs; under such a
// limit, set GOMAXPROCS explicitly.
//
// GOGC 400: the live heap is a few MiB (no caches, no content kept), so at
// the default 100 the collector runs thousands of times a second under
// load.
//
// Memory limit: inside a container with a memory limit (cgroup v2
// memory.max, or v1 memory.limit_in_bytes), the runtime's soft limit is
// set to MemoryLimitShare of it, so that when thousands of requests wait
// on the provider the collector runs harder as the limit nears instead of
// the heap growing by GOGC until the kernel kills the process.
func TuneRuntime(getenv func(string) string) Runtime {
	return tuneRuntime(getenv, os.DirFS("/"))
}

func tuneRuntime(getenv func(string) string, root fs.FS) Runtime {
	if getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	}
	if getenv("GOGC") == "" {
		debug.SetGCPercent(400)
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
