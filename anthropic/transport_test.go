package anthropic

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"
)

type bodyTransport []byte

func (b bodyTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Body: io.NopCloser(bytes.NewReader(b))}, nil
}

func TestCapTransport(t *testing.T) {
	tests := []struct {
		size    int
		wantErr error
	}{
		{0, nil},
		{99, nil},
		{100, nil},
		{101, errBodyTooLarge},
		{10000, errBodyTooLarge},
	}
	for _, tt := range tests {
		ct := capTransport{next: bodyTransport(bytes.Repeat([]byte("x"), tt.size)), max: 100}
		res, err := ct.RoundTrip(&http.Request{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(res.Body)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("size %d: err = %v, want %v", tt.size, err, tt.wantErr)
		}
		if len(got) > 100 || (tt.wantErr == nil && len(got) != tt.size) {
			t.Errorf("size %d: read %d bytes", tt.size, len(got))
		}
		res.Body.Close()
	}
}

func TestDefaultTransportPool(t *testing.T) {
	tr, ok := defaultTransport(300).(*http.Transport)
	if !ok {
		t.Fatalf("default transport is %T", defaultTransport(300))
	}
	if tr.MaxIdleConnsPerHost != 300 || tr.MaxConnsPerHost != 300 || tr.MaxIdleConns != 300 {
		t.Errorf("pool not sized to the in-flight bound: idle/host %d, conns/host %d, idle %d", tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost, tr.MaxIdleConns)
	}
	if tr.MaxResponseHeaderBytes != MaxResponseHeaderBytes {
		t.Errorf("header cap = %d", tr.MaxResponseHeaderBytes)
	}
	p := New(testOptions("http://127.0.0.1:1"))
	if _, ok := p.hc.Transport.(capTransport); !ok {
		t.Errorf("transport %T is not capped", p.hc.Transport)
	}
}

// A caller's client is capped (body and, for an *http.Transport, headers)
// without being modified.
func TestCallerClientCapped(t *testing.T) {
	tests := []struct {
		name       string
		client     *http.Client
		wantHeader int64 // the header cap of the transport used; -1: not an *http.Transport
	}{
		{"nil transport", &http.Client{}, MaxResponseHeaderBytes},
		{"loose transport", &http.Client{Transport: &http.Transport{MaxResponseHeaderBytes: 1 << 20}}, MaxResponseHeaderBytes},
		{"tighter transport", &http.Client{Transport: &http.Transport{MaxResponseHeaderBytes: 1 << 10}}, 1 << 10},
		{"other round tripper", &http.Client{Transport: &roundTripper{}}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.client.Transport
			var beforeCap int64
			if tr, ok := before.(*http.Transport); ok {
				beforeCap = tr.MaxResponseHeaderBytes
			}
			o := testOptions("http://127.0.0.1:1")
			o.HTTPClient = tt.client
			p := New(o)
			ct, ok := p.hc.Transport.(capTransport)
			if !ok {
				t.Fatalf("transport %T is not capped", p.hc.Transport)
			}
			if tt.client.Transport != before {
				t.Error("the caller's client was modified")
			}
			if tr, ok := before.(*http.Transport); ok && tr.MaxResponseHeaderBytes != beforeCap {
				t.Error("the caller's transport was modified")
			}
			tr, ok := ct.next.(*http.Transport)
			switch {
			case tt.wantHeader < 0 && ok:
				t.Errorf("next = %T", ct.next)
			case tt.wantHeader >= 0 && (!ok || tr.MaxResponseHeaderBytes != tt.wantHeader):
				t.Errorf("next = %T, want header cap %d", ct.next, tt.wantHeader)
			}
		})
	}
}

type roundTripper struct{ http.RoundTripper }
