package failover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/offload-app/offload"
	"github.com/offload-app/offload/anthropic"
	"github.com/offload-app/offload/anthropic/anthropictest"
	"github.com/offload-app/offload/local"
	"github.com/offload-app/offload/openai"
	"github.com/offload-app/offload/openai/openaitest"
)

// The real adapters, through their SDKs, against their fakes, behind the
// chain. Backoff sleeps are skipped; every wait is bounded by the fakes.

var testRetry = offload.RetryPolicy{MaxAttempts: 3, BaseDelay: 250 * time.Millisecond, MaxDelay: 2 * time.Second, MaxTotalDelay: 4 * time.Second, JitterFactor: 0.25}

func noSleep(ctx context.Context, _ time.Duration) error { return ctx.Err() }

// newOpenAI is the one place that knows openai's constructor.
func newOpenAI(url, key string, logger *slog.Logger) offload.Provider {
	p, err := openai.New(openai.Options{
		APIKey: key, BaseURL: url, Model: "gpt-test", Timeout: 5 * time.Second,
		Retry: testRetry, Logger: logger, Sleep: noSleep,
	})
	if err != nil {
		panic(err) // fixed, valid options
	}
	return p
}

func newAnthropic(url, key string, logger *slog.Logger) offload.Provider {
	return anthropic.New(anthropic.Options{
		APIKey: key, BaseURL: url, Timeout: 5 * time.Second, Retry: testRetry, Logger: logger, Sleep: noSleep,
	})
}

type adapters struct {
	oa   *openaitest.Server
	an   *anthropictest.Server
	logs *bytes.Buffer
	log  *slog.Logger
	m    *metrics
}

func newAdapters(t *testing.T) *adapters {
	t.Helper()
	a := &adapters{oa: openaitest.NewServer(openaitest.WithRecording()), an: anthropictest.NewServer(anthropictest.WithRecording()),
		logs: &bytes.Buffer{}, m: &metrics{}}
	t.Cleanup(a.oa.Close)
	t.Cleanup(a.an.Close)
	a.log = slog.New(slog.NewJSONHandler(a.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return a
}

func (a *adapters) chain(t *testing.T, ps ...offload.Provider) *Chain {
	t.Helper()
	c, err := New(ps, Options{Clock: newClock(), Metrics: a.m, Logger: a.log})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testReq() offload.BreakdownRequest {
	return offload.BreakdownRequest{InputText: "Clean the garage", Granularity: 3}
}

func TestAdaptersFailOver(t *testing.T) {
	tests := []struct {
		name          string
		order         string // "oa" or "an" first
		oa            func(openaitest.Request) openaitest.Response
		an            func(anthropictest.Request) anthropictest.Response
		oaKey, anKey  string
		wantProvider  string
		wantOA, wantA int // upstream requests
	}{
		{"openai 503, anthropic answers", "oa",
			func(openaitest.Request) openaitest.Response { return openaitest.Response{Status: 503} }, nil,
			"sk-oa", "sk-an", "anthropic", 3, 1},
		{"openai 429, anthropic answers", "oa",
			func(openaitest.Request) openaitest.Response { return openaitest.Response{Status: 429} }, nil,
			"sk-oa", "sk-an", "anthropic", 3, 1},
		{"openai unusable answer, anthropic answers", "oa",
			func(openaitest.Request) openaitest.Response { return openaitest.Response{Content: "no plan"} }, nil,
			"sk-oa", "sk-an", "anthropic", 1, 1},
		{"openai without key, anthropic answers", "oa", nil, nil, "", "sk-an", "anthropic", 0, 1},
		{"anthropic 529, openai answers", "an", nil,
			func(anthropictest.Request) anthropictest.Response { return anthropictest.Response{Status: 529} },
			"sk-oa", "sk-an", "openai", 1, 3},
		{"anthropic 400 refused, openai untouched", "an", nil,
			func(anthropictest.Request) anthropictest.Response { return anthropictest.Response{Status: 400} },
			"sk-oa", "sk-an", "", 0, 1},
		{"anthropic 401 refused, openai untouched", "an", nil,
			func(anthropictest.Request) anthropictest.Response { return anthropictest.Response{Status: 401} },
			"sk-oa", "sk-an", "", 0, 1},
		{"openai answers first", "oa", nil, nil, "sk-oa", "sk-an", "openai", 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAdapters(t)
			if tt.oa != nil {
				a.oa.Respond(tt.oa)
			}
			if tt.an != nil {
				a.an.Respond(tt.an)
			}
			oa, an := newOpenAI(a.oa.URL, tt.oaKey, a.log), newAnthropic(a.an.URL, tt.anKey, a.log)
			ps := []offload.Provider{oa, an}
			if tt.order == "an" {
				ps = []offload.Provider{an, oa}
			}
			out, err := a.chain(t, ps...).Generate(context.Background(), testReq())
			if tt.wantProvider == "" {
				pe := providerError(t, err)
				if !pe.Refused() || pe.Provider != "anthropic" {
					t.Errorf("err = %+v, want anthropic's refusal", pe)
				}
			} else if err != nil || out.Provider != tt.wantProvider || len(out.Steps) == 0 {
				t.Fatalf("got %+v, %v; want an answer from %s", out, err, tt.wantProvider)
			}
			if a.oa.Count() != tt.wantOA || a.an.Count() != tt.wantA {
				t.Errorf("upstream requests openai %d, anthropic %d; want %d, %d", a.oa.Count(), a.an.Count(), tt.wantOA, tt.wantA)
			}
		})
	}
}

// An OpenAI refusal must not reach Anthropic.
func TestAdaptersOpenAIRefusalStays(t *testing.T) {
	a := newAdapters(t)
	a.oa.Respond(func(openaitest.Request) openaitest.Response { return openaitest.Response{Status: 400} })
	oa := newOpenAI(a.oa.URL, "sk-oa", a.log)
	_, err := a.chain(t, oa, newAnthropic(a.an.URL, "sk-an", a.log)).Generate(context.Background(), testReq())
	if pe := providerError(t, err); !pe.Refused() || pe.Provider != "openai" || a.an.Count() != 0 {
		t.Errorf("err %+v, anthropic requests %d", pe, a.an.Count())
	}
}

// local ends a chain as the last resort that always answers.
func TestAdaptersLocalLastResort(t *testing.T) {
	a := newAdapters(t)
	a.oa.Respond(func(openaitest.Request) openaitest.Response { return openaitest.Response{Status: 500} })
	a.an.Respond(func(anthropictest.Request) anthropictest.Response { return anthropictest.Response{Status: 529} })
	c := a.chain(t, newOpenAI(a.oa.URL, "sk-oa", a.log), newAnthropic(a.an.URL, "sk-an", a.log), local.Provider{})
	if c.Name() != "openai,anthropic,local" {
		t.Errorf("Name = %q", c.Name())
	}
	out, err := c.Generate(context.Background(), testReq())
	if err != nil || out.Provider != "local" || len(out.Steps) == 0 {
		t.Fatalf("%+v, %v", out, err)
	}
	calls, _ := a.m.take()
	want := []string{"openai/status_500", "anthropic/status_529", "local/ok"}
	if len(calls) != 3 {
		t.Fatalf("calls = %+v", calls)
	}
	for i, c := range calls {
		if c.Provider+"/"+c.Outcome != want[i] {
			t.Errorf("call %d = %+v, want %s", i, c, want[i])
		}
	}
}

// The privacy canary of the adapters' tests, across a failover: nothing of
// the request, of the upstream bodies (which echo it) or of the keys
// reaches the log lines of the adapters and the chain, the error, or a
// metrics label.
func TestAdaptersPrivacyAcrossFailover(t *testing.T) {
	canaries := []string{"CANARY-INPUT-c0ffee", "CANARY-HINT-d00d", "CANARY-TPL-beef", "CANARY-ECHO-f00d", "sk-oa-CANARY-KEY", "sk-an-CANARY-KEY"}
	req := offload.BreakdownRequest{
		InputText:    "please plan " + canaries[0],
		Granularity:  5,
		ContextHints: []string{canaries[1]},
		TemplateIDs:  []string{canaries[2]},
	}
	echo := fmt.Sprintf(`{"error":{"message":"you said %s %s","type":"x"}}`, canaries[0], canaries[3])
	for _, last := range []string{"anthropic", "local"} {
		t.Run("ending with "+last, func(t *testing.T) {
			a := newAdapters(t)
			a.oa.Respond(func(openaitest.Request) openaitest.Response {
				return openaitest.Response{Status: 503, Body: []byte(echo)}
			})
			a.an.Respond(func(anthropictest.Request) anthropictest.Response {
				return anthropictest.Response{Status: 529, Body: []byte(echo)}
			})
			ps := []offload.Provider{newOpenAI(a.oa.URL, canaries[4], a.log), newAnthropic(a.an.URL, canaries[5], a.log)}
			if last == "local" {
				ps = append(ps, local.Provider{})
			}
			c := a.chain(t, ps...)
			var out strings.Builder
			for range 6 { // past the breaker threshold, so breaker lines are in too
				_, err := c.Generate(context.Background(), req)
				if err != nil {
					out.WriteString(err.Error())
					var pe *offload.ProviderError
					if errors.As(err, &pe) {
						fmt.Fprintf(&out, "%+v", *pe)
					}
				}
			}
			out.WriteString(a.logs.String())
			calls, br := a.m.take()
			fmt.Fprintf(&out, "%+v %v", calls, br)
			for _, cn := range canaries {
				if strings.Contains(out.String(), cn) {
					t.Errorf("canary %q leaked: %s", cn, out.String())
				}
			}
			if !strings.Contains(a.logs.String(), `"msg":"provider_failover"`) || !strings.Contains(a.logs.String(), `"msg":"provider_breaker_open"`) {
				t.Errorf("expected failover and breaker lines: %s", a.logs.String())
			}
			// The canary did reach the upstreams: the test could see a leak.
			if r := a.an.Requests(); len(r) == 0 || !strings.Contains(string(r[0].Raw), canaries[0]) {
				t.Error("the request never reached anthropic")
			}
		})
	}
}
