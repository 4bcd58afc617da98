package anthropic

import (
	"context"
	"testing"
	"time"

	"github.com/offload-app/offload/anthropic/anthropictest"
)

// BenchmarkGenerate measures one Generate through the SDK against an instant
// local fake: the adapter's own cost plus a loopback HTTP round trip.
func BenchmarkGenerate(b *testing.B) {
	srv := anthropictest.NewServer()
	defer srv.Close()
	p := New(testOptions(srv.URL))
	req := testRequest()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Generate(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGenerateParallel: many concurrent generates sharing one provider.
// With an upstream delay, throughput must scale with concurrency (nothing
// serialises the calls).
func BenchmarkGenerateParallel(b *testing.B) {
	for _, delay := range []time.Duration{0, 50 * time.Millisecond} {
		b.Run("delay="+delay.String(), func(b *testing.B) {
			srv := anthropictest.NewServer(anthropictest.WithDelay(delay))
			defer srv.Close()
			p := New(testOptions(srv.URL))
			req := testRequest()
			b.SetParallelism(100) // × GOMAXPROCS goroutines
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := p.Generate(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkPlanJSON(b *testing.B) {
	text := []byte("```json\n" + anthropictest.DefaultText + "\n```")
	b.ReportAllocs()
	for b.Loop() {
		_ = planJSON(text)
	}
}
