package failover

import (
	"context"
	"testing"

	"github.com/offload-app/offload"
)

type instant struct{}

func (instant) Name() string { return "instant" }
func (instant) Generate(context.Context, offload.BreakdownRequest) (offload.Breakdown, error) {
	return offload.Breakdown{}, nil
}

// BenchmarkChainOverhead is the chain's own cost per request around an
// instant provider (the breaker's two lock round trips, the clock, metrics),
// serial and under contention.
func BenchmarkChainOverhead(b *testing.B) {
	c, err := New([]offload.Provider{instant{}}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = c.Generate(ctx, offload.BreakdownRequest{})
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = c.Generate(ctx, offload.BreakdownRequest{})
			}
		})
	})
}
