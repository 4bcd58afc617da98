package openaitest

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Hostile answers: an upstream that sends a huge header, a huge body or a
// slow trickle. Everything is streamed from the small shared buffers below,
// so 50 concurrent 50 MB answers cost the fake a few KiB each and a memory
// measurement of the client is not blurred by the server.

const padChunk = 32 << 10

var (
	// spaces pads bodies: trailing whitespace keeps the JSON valid.
	spaces = []byte(strings.Repeat(" ", padChunk))
	// padLine is one header line of about 8 KiB.
	padLine = []byte("X-Openaitest-Pad: " + strings.Repeat("a", 8<<10) + "\r\n")
)

// writeStall bounds one write to a client that neither reads nor goes away,
// so that a handler always ends (and Close, which waits for handlers, too).
const writeStall = 2 * time.Second

func (s *Server) writeHostile(w http.ResponseWriter, r *http.Request, status int, body []byte, resp Response) {
	pad := max(resp.BodyBytes-int64(len(body)), 0)
	if resp.HeaderBytes > 0 {
		s.writeRaw(w, r, status, body, pad, resp)
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = vs
	}
	h["Content-Type"] = []string{"application/json"}
	if !resp.Chunked {
		h["Content-Length"] = []string{strconv.FormatInt(int64(len(body))+pad, 10)}
	}
	w.WriteHeader(status)
	out := &stallWriter{w: w, deadline: rc.SetWriteDeadline}
	s.stream(r.Context(), out, rc.Flush, body, pad, resp.Drip)
}

// writeRaw answers on the hijacked connection, since net/http's
// ResponseWriter holds the whole header in memory and refuses odd ones.
func (s *Server) writeRaw(w http.ResponseWriter, r *http.Request, status int, body []byte, pad int64, resp Response) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	// net/http no longer watches a hijacked connection: Close must still
	// end this handler.
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-s.done:
			conn.Close()
		case <-finished:
		}
	}()
	out := &stallWriter{w: brw, deadline: conn.SetWriteDeadline}
	head := "HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\nContent-Type: application/json\r\nConnection: close\r\n"
	if _, err := io.WriteString(out, head); err != nil {
		return
	}
	for left := resp.HeaderBytes; left > 0; left -= len(padLine) {
		if _, err := out.Write(padLine); err != nil {
			return
		}
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			if _, err := io.WriteString(out, k+": "+v+"\r\n"); err != nil {
				return
			}
		}
	}
	var bodyOut io.Writer = out
	if resp.Chunked {
		_, err = io.WriteString(out, "Transfer-Encoding: chunked\r\n\r\n")
		bodyOut = chunkWriter{out}
	} else {
		_, err = io.WriteString(out, "Content-Length: "+strconv.FormatInt(int64(len(body))+pad, 10)+"\r\n\r\n")
	}
	if err != nil {
		return
	}
	if !s.stream(r.Context(), bodyOut, brw.Flush, body, pad, resp.Drip) {
		return
	}
	if resp.Chunked {
		_, _ = io.WriteString(out, "0\r\n\r\n")
	}
	_ = brw.Flush()
}

// stream writes body then pad spaces, byte by byte drip apart when drip > 0.
// It reports whether everything was written.
func (s *Server) stream(ctx context.Context, w io.Writer, flush func() error, body []byte, pad int64, drip time.Duration) bool {
	if drip > 0 {
		for i := int64(0); i < int64(len(body))+pad; i++ {
			b := byte(' ')
			if i < int64(len(body)) {
				b = body[i]
			}
			if _, err := w.Write([]byte{b}); err != nil || flush() != nil {
				return false
			}
			if !s.wait(ctx, drip) {
				return false
			}
		}
		return true
	}
	if _, err := w.Write(body); err != nil {
		return false
	}
	for pad > 0 {
		select {
		case <-ctx.Done():
			return false
		case <-s.done:
			return false
		default:
		}
		n := min(pad, int64(len(spaces)))
		if _, err := w.Write(spaces[:n]); err != nil {
			return false
		}
		pad -= n
	}
	return true
}

// stallWriter gives every write writeStall to complete.
type stallWriter struct {
	w        io.Writer
	deadline func(time.Time) error
}

func (s *stallWriter) Write(p []byte) (int, error) {
	_ = s.deadline(time.Now().Add(writeStall))
	return s.w.Write(p)
}

// chunkWriter frames each write as one HTTP/1.1 chunk.
type chunkWriter struct{ w io.Writer }

func (c chunkWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if _, err := io.WriteString(c.w, strconv.FormatInt(int64(len(p)), 16)+"\r\n"); err != nil {
		return 0, err
	}
	n, err := c.w.Write(p)
	if err != nil {
		return n, err
	}
	_, err = io.WriteString(c.w, "\r\n")
	return n, err
}
