package openai

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
	tr, ok := defaultTransport().(*http.Transport)
	if !ok {
		t.Fatalf("default transport is %T", defaultTransport())
	}
	if tr.MaxIdleConnsPerHost < 200 || tr.MaxConnsPerHost != 0 {
		t.Errorf("pool would serialise concurrent upstream calls: idle/host %d, conns/host %d", tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost)
	}
	p := New(testConfig("http://127.0.0.1:1/v1"), nil)
	if _, ok := p.hc.Transport.(capTransport); !ok {
		t.Errorf("transport %T is not capped", p.hc.Transport)
	}
	custom := &http.Client{}
	p = New(testConfig("http://127.0.0.1:1/v1"), nil, WithHTTPClient(custom))
	if _, ok := p.hc.Transport.(capTransport); !ok || custom.Transport != nil {
		t.Error("a caller's client must be capped without being modified")
	}
}
