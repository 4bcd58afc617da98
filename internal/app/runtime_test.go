package app

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"testing/fstest"
)

func TestCgroupMemoryLimit(t *testing.T) {
	tests := []struct {
		dir   string
		limit int64
		ok    bool
	}{
		{"v2-limit", 512 << 20, true},
		{"v2-max", 0, false},
		{"v2-nested", 1 << 30, true},         // the pod's limit, an ancestor's
		{"v2-tighter-leaf", 512 << 20, true}, // the tightest on the way up
		{"v1-limit", 256 << 20, true},
		{"v1-hybrid-unlimited", 0, false},
		{"outside-root", 0, false},
		{"escaped", 100 << 20, true},
		{"garbage", 0, false},
		{"none", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			limit, ok := cgroupMemoryLimit(os.DirFS(filepath.Join("testdata", "cgroup", tt.dir)))
			if limit != tt.limit || ok != tt.ok {
				t.Errorf("cgroupMemoryLimit = %d, %v; want %d, %v", limit, ok, tt.limit, tt.ok)
			}
		})
	}
}

func TestMemoryLimit(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	limited := os.DirFS(filepath.Join("testdata", "cgroup", "v2-limit"))
	unlimited := os.DirFS(filepath.Join("testdata", "cgroup", "v2-max"))
	tests := []struct {
		name  string
		env   map[string]string
		root  string
		limit int64
		from  string
	}{
		{"cgroup limit", nil, "limited", 483183820, "cgroup"}, // 90% of 512 MiB
		{"no limit", nil, "unlimited", 0, ""},
		{"GOMEMLIMIT wins", map[string]string{"GOMEMLIMIT": "off"}, "limited", 0, "GOMEMLIMIT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := unlimited
			if tt.root == "limited" {
				root = limited
			}
			limit, from := memoryLimit(env(tt.env), root)
			if limit != tt.limit || from != tt.from {
				t.Errorf("memoryLimit = %d, %q; want %d, %q", limit, from, tt.limit, tt.from)
			}
		})
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/sys/fs/cgroup`: "/sys/fs/cgroup",
		`/run/a\040b`:    "/run/a b",
		`/tab\011x\134y`: "/tab\tx\\y",
		`/trailing\04`:   `/trailing\04`,
		`/not\999octal`:  `/not\999octal`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzCgroupMemoryLimit feeds arbitrary cgroup and mountinfo files: the
// parser must not panic, and a limit it reports is positive.
func FuzzCgroupMemoryLimit(f *testing.F) {
	for _, dir := range []string{"v2-nested", "v1-limit", "escaped"} {
		root := filepath.Join("testdata", "cgroup", dir)
		cg, _ := os.ReadFile(filepath.Join(root, "proc", "self", "cgroup"))
		mi, _ := os.ReadFile(filepath.Join(root, "proc", "self", "mountinfo"))
		f.Add(cg, mi, []byte("536870912"))
	}
	f.Fuzz(func(t *testing.T, cg, mi, limit []byte) {
		fsys := fstest.MapFS{
			"proc/self/cgroup":    {Data: cg},
			"proc/self/mountinfo": {Data: mi},
		}
		for _, m := range cgroupMounts(mi) {
			p := strings.TrimPrefix(path.Clean(m.point), "/")
			if fs.ValidPath(p) {
				fsys[path.Join(p, "memory.max")] = &fstest.MapFile{Data: limit}
			}
		}
		if l, ok := cgroupMemoryLimit(fsys); ok && l <= 0 {
			t.Errorf("limit %d reported", l)
		}
	})
}

// TestTuneRuntime checks the settings on this machine's runtime and puts
// them back: environment variables win, a cgroup limit becomes the soft
// memory limit.
func TestTuneRuntime(t *testing.T) {
	procs, gogc, limit := runtime.GOMAXPROCS(0), debug.SetGCPercent(-1), debug.SetMemoryLimit(-1)
	debug.SetGCPercent(gogc)
	t.Cleanup(func() {
		runtime.GOMAXPROCS(procs)
		debug.SetGCPercent(gogc)
		debug.SetMemoryLimit(limit)
	})
	limited := os.DirFS(filepath.Join("testdata", "cgroup", "v2-limit"))

	got := tuneRuntime(func(k string) string { return map[string]string{"GOMAXPROCS": "1", "GOGC": "77"}[k] }, limited)
	// The runtime read GOMAXPROCS and GOGC from the environment at start;
	// TuneRuntime must leave what it found.
	if got.GOMAXPROCS != procs || got.GOGC != gogc {
		t.Errorf("with GOMAXPROCS and GOGC set: %+v, want them untouched (%d, %d)", got, procs, gogc)
	}
	if got.MemoryLimitFrom != "cgroup" || got.MemoryLimit != 483183820 || debug.SetMemoryLimit(-1) != 483183820 {
		t.Errorf("memory limit %+v (runtime %d), want 90%% of 512 MiB from the cgroup", got, debug.SetMemoryLimit(-1))
	}

	debug.SetMemoryLimit(limit)
	runtime.GOMAXPROCS(procs)
	got = tuneRuntime(func(string) string { return "" }, os.DirFS(filepath.Join("testdata", "cgroup", "none")))
	wantProcs := procs
	if procs >= runtime.NumCPU() {
		wantProcs++
	}
	if got.GOMAXPROCS != wantProcs || got.GOGC != DefaultGOGC || got.MemoryLimit != 0 || got.MemoryLimitFrom != "" {
		t.Errorf("defaults: %+v, want GOMAXPROCS %d, GOGC %d, no memory limit", got, wantProcs, DefaultGOGC)
	}
}
