//go:build !unix

package sqlite_test

import "time"

// processCPU is unavailable here; the benchmark then reports no CPU metric.
func processCPU() time.Duration { return 0 }
