package app

import (
	"bufio"
	"bytes"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// cgroupMemoryLimit returns the memory limit of the cgroup this process
// runs in: the tightest of its own cgroup's and its ancestors' up to the
// root of the mounted hierarchy (a container sees its own cgroup as that
// root), in cgroup v2 (memory.max) or v1 (memory.limit_in_bytes, the
// memory controller's hierarchy). ok is false when no limit applies or the
// files are not there (not Linux, no cgroup mounted).
//
// fsys is the root file system (os.DirFS("/")); tests pass testdata trees.
func cgroupMemoryLimit(fsys fs.FS) (limit int64, ok bool) {
	cg, err := fs.ReadFile(fsys, "proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	mounts, err := fs.ReadFile(fsys, "proc/self/mountinfo")
	if err != nil {
		return 0, false
	}
	v1Path, v2Path, haveV1, haveV2 := cgroupPaths(cg)
	for _, m := range cgroupMounts(mounts) {
		var (
			cgPath string
			file   string
		)
		switch {
		case m.v2 && haveV2:
			cgPath, file = v2Path, "memory.max"
		case !m.v2 && haveV1:
			cgPath, file = v1Path, "memory.limit_in_bytes"
		default:
			continue
		}
		rel, inside := relativeTo(cgPath, m.root)
		if !inside {
			continue
		}
		mountDir := strings.TrimPrefix(path.Clean(m.point), "/")
		dir := path.Join(mountDir, rel)
		for {
			if v, set := readLimit(fsys, path.Join(dir, file)); set && (!ok || v < limit) {
				limit, ok = v, true
			}
			if dir == mountDir || dir == "." || dir == "" {
				break
			}
			dir = path.Dir(dir)
		}
	}
	return limit, ok
}

// cgroupPaths reads /proc/self/cgroup: the path in the v1 hierarchy that
// has the memory controller, and the v2 path ("0::/path").
func cgroupPaths(b []byte) (v1, v2 string, haveV1, haveV2 bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		id, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		controllers, p, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		switch {
		case id == "0" && controllers == "":
			v2, haveV2 = p, true
		case hasField(controllers, "memory"):
			v1, haveV1 = p, true
		}
	}
	return v1, v2, haveV1, haveV2
}

// cgroupMount is a mounted cgroup hierarchy that may hold memory limits.
type cgroupMount struct {
	root  string // the cgroup path the mount point shows
	point string
	v2    bool
}

// cgroupMounts reads /proc/self/mountinfo for the cgroup2 mounts and the
// v1 mounts of the memory controller. A line is
// "id parent maj:min root mountpoint options [optional...] - fstype source superoptions".
func cgroupMounts(b []byte) []cgroupMount {
	var out []cgroupMount
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 1 {
			continue
		}
		m := cgroupMount{root: unescapeMount(f[3]), point: unescapeMount(f[4])}
		switch {
		case g[0] == "cgroup2":
			m.v2 = true
		case g[0] == "cgroup" && len(g) >= 3 && hasField(g[2], "memory"):
		default:
			continue
		}
		out = append(out, m)
	}
	return out
}

// relativeTo returns p relative to root, and whether p lies under it.
func relativeTo(p, root string) (string, bool) {
	p, root = path.Clean("/"+p), path.Clean("/"+root)
	if root == "/" {
		return strings.TrimPrefix(p, "/"), true
	}
	if p == root {
		return "", true
	}
	if rest, ok := strings.CutPrefix(p, root+"/"); ok {
		return rest, true
	}
	return "", false
}

// readLimit parses a memory.max ("max" or bytes) or memory.limit_in_bytes
// (bytes; "no limit" is the largest page-aligned int64) file.
func readLimit(fsys fs.FS, name string) (int64, bool) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return 0, false
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 || v >= 1<<62 {
		return 0, false
	}
	return v, true
}

func hasField(list, name string) bool {
	for f := range strings.SplitSeq(list, ",") {
		if f == name {
			return true
		}
	}
	return false
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
