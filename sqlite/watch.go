package sqlite

import (
	"errors"
	"io/fs"
	"os"
	"time"
)

// startWatcher starts the goroutine that checks, every watch interval, that
// the path still names the file the store has open. A file deleted or
// replaced under a running server (a restore, a cleanup script, a volume
// swap) would otherwise take every later count with it into an unlinked
// inode, lost at the next restart. From the first check that sees it, every
// write and read fails with offload.ErrStorage and Check reports it.
func (s *Store) startWatcher() {
	ticks, stop := s.cfg.watchTicks, func() {}
	if ticks == nil {
		if s.cfg.watchInterval <= 0 {
			return
		}
		t := time.NewTicker(s.cfg.watchInterval)
		ticks, stop = t.C, t.Stop
	}
	go func() {
		defer stop()
		for {
			select {
			case <-ticks:
				_ = s.checkFile()
			case <-s.closing:
				return
			}
		}
	}()
}

// checkFile compares the file at the path with the one opened. A missing or
// different file marks the store broken for good: the counts it holds are
// in the file it has open, and the path has another one (or none). Another
// failure to look (permissions, I/O) fails this check only.
func (s *Store) checkFile() error {
	if s.broken.Load() {
		return storageErr("check", errReplaced)
	}
	fi, err := os.Stat(s.path)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !os.SameFile(fi, s.file)) {
		s.broken.Store(true)
		return storageErr("check", errReplaced)
	}
	if err != nil {
		return storageErr("check database file", err)
	}
	return nil
}
