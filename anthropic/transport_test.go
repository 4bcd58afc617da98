package anthropic

import (
	"net/http"
	"testing"

	"github.com/offload-app/offload/internal/upstream"
)

func TestTransportPool(t *testing.T) {
	o := testOptions("http://127.0.0.1:1")
	o.MaxConns = 300
	ct, ok := New(o).hc.Transport.(upstream.CapBodies)
	if !ok || ct.Max != MaxResponseBytes {
		t.Fatalf("transport %T is not capped at MaxResponseBytes", New(o).hc.Transport)
	}
	tr, ok := ct.Next.(*http.Transport)
	if !ok || tr.MaxIdleConnsPerHost != 300 || tr.MaxConnsPerHost != 300 || tr.MaxIdleConns != 300 || tr.MaxResponseHeaderBytes != upstream.MaxHeaderBytes {
		t.Errorf("pool not sized to the in-flight bound or headers uncapped: %T %+v", ct.Next, tr)
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
		{"nil transport", &http.Client{}, upstream.MaxHeaderBytes},
		{"loose transport", &http.Client{Transport: &http.Transport{MaxResponseHeaderBytes: 1 << 20}}, upstream.MaxHeaderBytes},
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
			ct, ok := p.hc.Transport.(upstream.CapBodies)
			if !ok {
				t.Fatalf("transport %T is not capped", p.hc.Transport)
			}
			if tt.client.Transport != before {
				t.Error("the caller's client was modified")
			}
			if tr, ok := before.(*http.Transport); ok && tr.MaxResponseHeaderBytes != beforeCap {
				t.Error("the caller's transport was modified")
			}
			tr, ok := ct.Next.(*http.Transport)
			switch {
			case tt.wantHeader < 0 && ok:
				t.Errorf("next = %T", ct.Next)
			case tt.wantHeader >= 0 && (!ok || tr.MaxResponseHeaderBytes != tt.wantHeader):
				t.Errorf("next = %T, want header cap %d", ct.Next, tt.wantHeader)
			}
		})
	}
}

type roundTripper struct{ http.RoundTripper }
