package redis_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/offload-app/offload/redis"
)

// BenchmarkAllow is one check against a local redis-server (loopback, so
// this is the floor of a check's cost: a network hop adds its round trip).
func BenchmarkAllow(b *testing.B) {
	srv := startServer(b)
	c := open(b, srv.URL(), redis.WithTimeout(time.Second))
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "install-" + strconv.Itoa(i)
	}
	b.Run("serial", func(b *testing.B) {
		l := c.Limiter("bench_serial", 1<<30, time.Hour, nil)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if ok, _ := l.Allow(keys[i%len(keys)]); !ok {
				b.Fatal("denied")
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		l := c.Limiter("bench_parallel", 1<<30, time.Hour, nil)
		b.ReportAllocs()
		b.SetParallelism(8) // requests in flight per core, as a busy server has
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if ok, _ := l.Allow(keys[i%len(keys)]); !ok {
					b.Error("denied")
					return
				}
				i++
			}
		})
	})
	if c.Degraded() {
		b.Error("fell back during the benchmark")
	}
}

// BenchmarkAllowDegraded is a check answered in process during the back-off:
// what a request pays while Redis is down.
func BenchmarkAllowDegraded(b *testing.B) {
	c := open(b, "redis://127.0.0.1:1", redis.WithCheckTimeout(50*time.Millisecond), redis.WithBackoff(time.Hour))
	l := c.Limiter("bench_degraded", 1<<30, time.Hour, nil)
	b.ReportAllocs()
	for b.Loop() {
		l.Allow("install-1")
	}
}
