package openai

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/param"
	"github.com/openai/openai-go/v3/shared"

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
	defer reportCPU(b)()
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
//
// "adapter" is Generate. The others are the reference points behind its
// design, each one attempt with the answer validated the same way:
// params_each_call lets the SDK marshal the whole request every time instead
// of the body template; sdk_decode lets the SDK decode into its
// ChatCompletion instead of our small struct; set_json hands the template
// to the service through param.SetJSON, the SDK's documented way to send
// pre-encoded JSON (it re-compacts the body); client_post sends the
// template through the SDK's generic Client.Post instead of the typed
// service (no empty-params marshalling); no_sdk sends it with net/http
// alone, the most a bypass of the SDK could save.
func BenchmarkGenerateInMemory(b *testing.B) {
	body := openaitest.CompletionBody(openaitest.DefaultContent, openaitest.Usage{Prompt: 1, Completion: 1})
	o := testOptions("http://upstream.invalid/v1")
	o.HTTPClient = &http.Client{Transport: memTransport{body}}
	p := newProvider(b, o)
	req := testRequest()
	ctx := context.Background()
	validate := func(b *testing.B, res *http.Response, err error) {
		if err != nil {
			b.Fatal(err)
		}
		var out completion
		err = p.bodies.decode(res.Body, &out)
		res.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		if _, f := answer(&out); f != nil {
			b.Fatal(f.class)
		}
	}
	run := func(name string, once func(b *testing.B)) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				once(b)
			}
		})
	}
	run("adapter", func(b *testing.B) {
		if _, err := p.Generate(ctx, req); err != nil {
			b.Fatal(err)
		}
	})
	run("params_each_call", func(b *testing.B) {
		params := sdk.ChatCompletionNewParams{
			Model:    "gpt-test-model",
			Messages: []sdk.ChatCompletionMessageParamUnion{sdk.SystemMessage(offload.SystemPrompt), sdk.UserMessage(offload.UserMessage(req))},
			ResponseFormat: sdk.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
				JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: schemaName, Strict: sdk.Bool(true), Schema: rawJSON(planSchema)},
			}},
			MaxCompletionTokens: sdk.Int(maxCompletionTokens),
			Store:               sdk.Bool(false),
		}
		var res *http.Response
		_, err := p.completions.New(ctx, params, option.WithResponseBodyInto(&res))
		validate(b, res, err)
	})
	run("sdk_decode", func(b *testing.B) {
		cc, err := p.completions.New(ctx, sdk.ChatCompletionNewParams{}, option.WithRequestBody("application/json", p.requestBody(req)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := offload.ParseSteps([]byte(cc.Choices[0].Message.Content)); err != nil {
			b.Fatal(err)
		}
	})
	run("set_json", func(b *testing.B) {
		var params sdk.ChatCompletionNewParams
		param.SetJSON(p.requestBody(req), &params)
		var res *http.Response
		_, err := p.completions.New(ctx, params, option.WithResponseBodyInto(&res))
		validate(b, res, err)
	})
	client := sdk.Client{Options: []option.RequestOption{
		option.WithBaseURL(o.BaseURL), option.WithAPIKey(o.APIKey), option.WithHTTPClient(p.hc), option.WithMaxRetries(0),
	}}
	run("client_post", func(b *testing.B) {
		var res *http.Response
		err := client.Post(ctx, "chat/completions", p.requestBody(req), &res)
		validate(b, res, err)
	})
	run("no_sdk", func(b *testing.B) {
		hr, err := http.NewRequestWithContext(ctx, http.MethodPost, o.BaseURL+"/chat/completions", bytes.NewReader(p.requestBody(req)))
		if err != nil {
			b.Fatal(err)
		}
		hr.Header.Set("Content-Type", "application/json")
		hr.Header.Set("Authorization", "Bearer "+o.APIKey)
		res, err := p.hc.Do(hr)
		validate(b, res, err)
	})
}

// reportCPU reports the process's CPU time per op, which a machine busy with
// other work disturbs much less than ns/op (wall time). In the loopback
// benchmarks it includes the fake upstream's share.
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		if start > 0 {
			b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
		}
	}
}
