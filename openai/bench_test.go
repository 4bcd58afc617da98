package openai

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/openai/openaitest"
)

// BenchmarkGenerate measures one Generate through the SDK against an instant
// local fake: the adapter's own cost plus a loopback HTTP round trip.
func BenchmarkGenerate(b *testing.B) {
	srv := openaitest.NewServer()
	defer srv.Close()
	p := newProvider(b, testOptions(srv.URL))
	req := testRequest()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := p.Generate(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGenerateParallel is the benchmark's situation: many concurrent
// generates sharing one provider. With an upstream delay, throughput must
// scale with concurrency (nothing serialises the calls).
func BenchmarkGenerateParallel(b *testing.B) {
	for _, delay := range []time.Duration{0, 50 * time.Millisecond} {
		b.Run("delay="+delay.String(), func(b *testing.B) {
			srv := openaitest.NewServer(openaitest.WithDelay(delay))
			defer srv.Close()
			p := newProvider(b, testOptions(srv.URL))
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

func BenchmarkParseSteps(b *testing.B) {
	content := []byte(openaitest.DefaultContent)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := offload.ParseSteps(content); err != nil {
			b.Fatal(err)
		}
	}
}

// memTransport answers every request with body, in memory.
type memTransport struct{ body []byte }

func (m memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(m.body)), ContentLength: int64(len(m.body)), Request: r}, nil
}

// BenchmarkGenerateInMemory is the adapter and SDK alone: the round trip is
// an in-memory transport, so what is left is request building, the SDK's
// request handling and the answer's decoding and validation.
func BenchmarkGenerateInMemory(b *testing.B) {
	body := openaitest.CompletionBody(openaitest.DefaultContent, openaitest.Usage{Prompt: 1, Completion: 1})
	o := testOptions("http://upstream.invalid/v1")
	o.HTTPClient = &http.Client{Transport: memTransport{body}}
	p := newProvider(b, o)
	req := testRequest()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Generate(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
