// Package buildinfo is what every binary's --version prints, from the
// build information the Go toolchain records.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Version is the module version the binary was built from (a tag, or
// a pseudo-version), else "dev". It is at most 32 characters, so it can go
// out as the app_version of a session.
func Version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return moduleVersion(info)
}

func moduleVersion(info *debug.BuildInfo) string {
	if v := info.Main.Version; v != "" && v != "(devel)" && len(v) <= 32 {
		return v
	}
	return "dev"
}

// Line is what --version prints: the binary's name, its version,
// the VCS revision and time when the build recorded them, and the Go
// toolchain, e.g. "offload v1.2.0 (commit 1a2b3c4d5e6f, 2026-02-16T12:00:00Z,
// modified; go1.26.0 linux/amd64)".
func Line(binary string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return binary + " dev (" + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")"
	}
	return Format(binary, info)
}

// Format is Line for the given build information.
func Format(binary string, info *debug.BuildInfo) string {
	var details []string
	var modified bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			details = append([]string{"commit " + s.Value[:min(12, len(s.Value))]}, details...)
		case "vcs.time":
			details = append(details, s.Value)
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified {
		details = append(details, "modified")
	}
	goVersion := info.GoVersion
	if goVersion == "" {
		goVersion = runtime.Version()
	}
	tail := goVersion + " " + runtime.GOOS + "/" + runtime.GOARCH
	if len(details) > 0 {
		tail = strings.Join(details, ", ") + "; " + tail
	}
	return binary + " " + moduleVersion(info) + " (" + tail + ")"
}
