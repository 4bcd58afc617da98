package main

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"sort"
	"strconv"
	"time"
)

// leanSender is a cheaper client for one worker: its own keep-alive TCP
// connection, the request written from prebuilt bytes in one write, the
// reply parsed by http.ReadResponse in the worker's goroutine. It skips what
// makes http.Transport costly in a closed loop on two cores (a reader and a
// writer goroutine per connection and channel hand-offs for every request),
// so more of the CPU is left to the server being measured. HTTP/1.1 over
// plain TCP only.
type leanSender struct {
	ctx  context.Context
	addr string

	conn net.Conn
	br   *bufio.Reader
	stop func() bool // unregisters the close-on-cancel hook of conn

	head    []byte // request line and fixed headers, up to Content-Length
	hasBody bool
	out     []byte // the whole request, rebuilt for each send
}

var _ sender = (*leanSender)(nil)

// newLeanSender prepares the request bytes of p. Header order is sorted so
// the bytes are the same on every run.
func newLeanSender(ctx context.Context, p *plan) *leanSender {
	r := p.req
	l := &leanSender{ctx: ctx, addr: r.URL.Host, hasBody: p.body != nil}
	h := []byte(r.Method + " " + r.URL.RequestURI() + " HTTP/1.1\r\nHost: " + r.URL.Host + "\r\nUser-Agent: offload-bench\r\n")
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "Authorization" && p.authz != nil {
			continue // written per request
		}
		for _, v := range r.Header[k] {
			h = append(h, k+": "+v+"\r\n"...)
		}
	}
	l.head = h
	return l
}

func (l *leanSender) send(p *plan, st *workerState) string {
	p.prepare()
	out := append(l.out[:0], l.head...)
	if p.authz != nil {
		out = append(out, "Authorization: "...)
		out = append(out, p.authz[0]...)
		out = append(out, "\r\n"...)
	}
	if l.hasBody {
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, int64(len(p.body.buf)), 10)
		out = append(out, "\r\n\r\n"...)
		out = append(out, p.body.buf...)
	} else {
		out = append(out, "\r\n"...)
	}
	l.out = out

	if l.conn == nil {
		if err := l.dial(); err != nil {
			if l.ctx.Err() != nil {
				return "canceled"
			}
			return "transport error (dial)"
		}
	}
	if _, err := l.conn.Write(out); err != nil {
		return l.fail()
	}
	resp, err := http.ReadResponse(l.br, nil)
	if err != nil {
		return l.fail()
	}
	failure := readReply(resp, p, st)
	if resp.Close || len(failure) >= 9 && failure[:9] == "transport" {
		_ = l.Close()
	}
	return failure
}

func (l *leanSender) dial() error {
	d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(l.ctx, "tcp", l.addr)
	if err != nil {
		return err
	}
	l.conn = c
	if l.br == nil {
		l.br = bufio.NewReaderSize(c, 8<<10)
	} else {
		l.br.Reset(c)
	}
	// A read blocked on the server must end when the run is canceled.
	l.stop = context.AfterFunc(l.ctx, func() { _ = c.Close() })
	return nil
}

// fail drops the connection after an I/O error; the next send redials.
func (l *leanSender) fail() string {
	_ = l.Close()
	if l.ctx.Err() != nil {
		return "canceled"
	}
	return "transport error"
}

// Close closes the connection, if any.
func (l *leanSender) Close() error {
	if l.conn == nil {
		return nil
	}
	l.stop()
	err := l.conn.Close()
	l.conn = nil
	return err
}
