package buildinfo

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestVersionLine(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.time", Value: "2026-02-16T12:00:00Z"},
		{Key: "vcs.revision", Value: "1a2b3c4d5e6f7a8b9c0d"},
		{Key: "vcs.modified", Value: "true"},
	}}
	plat := runtime.GOOS + "/" + runtime.GOARCH
	if got, want := Format("offload-api", info), "offload-api v1.2.0 (commit 1a2b3c4d5e6f, 2026-02-16T12:00:00Z, modified; go1.26.0 "+plat+")"; got != want {
		t.Fatalf("version = %q, want %q", got, want)
	}
	dev := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}}
	if got, want := Format("offload", dev), "offload dev (go1.26.0 "+plat+")"; got != want {
		t.Fatalf("version = %q, want %q", got, want)
	}
	if v := Version(); v == "" || len(v) > 32 {
		t.Fatalf("build version %q", v)
	}
}
