package main

import (
	"bytes"
	"io"
	"log"
	"net"
	"net/http"
	"time"
)

// discardLog silences net/http's own error log in the bench's servers.
var discardLog = log.New(io.Discard, "", 0)

// floorHandler is the one-hop proxy floor: the least a Go server can do to
// answer a breakdown through the upstream. It reads the client's request,
// makes the same upstream call the API server makes (the very body and
// headers the upstream captured from it), and returns the upstream's answer
// as it came. No auth, no decoding, no counting, no logs: what the API's
// handlers add is the difference to it.
//
// Its client is what a tuned proxy would use: keep-alive with an idle pool
// as large as the concurrency (so no connection is ever closed for want of
// an idle slot), no per-host limit.
func floorHandler(upstreamURL string, call *capturedRequest, conns int) http.Handler {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
	}
	client := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	target := upstreamURL + "/chat/completions"
	header := http.Header{}
	for _, k := range []string{"Authorization", "Content-Type"} {
		if v := call.header.Get(k); v != "" {
			header.Set(k, v)
		}
	}
	body := call.body
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			http.Error(w, "bad upstream request", http.StatusInternalServerError)
			return
		}
		req.Header = header.Clone()
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, "upstream unavailable", http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for _, k := range []string{"Content-Type", "Content-Length"} {
			if v := resp.Header.Get(k); v != "" {
				w.Header().Set(k, v)
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
}
