package openai

import (
	"encoding/json"
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// DefaultMaxResponseBytes caps a success body when Options.MaxResponseBytes
// is 0. The largest valid plan (100 steps of 280 four-byte runes, every
// quote and backslash escaped again in the completion) is about 250 KB and
// a real one a few KB. What all concurrent reads hold is bounded besides
// (bodyBudget).
const DefaultMaxResponseBytes = 1 << 20

// A success body is read into pooled chunks: a real answer (a few KB) fits
// in the first, and a hostile one near the cap takes chunks that go back to
// the pool for the next read instead of leaving a trail of ever larger
// buffers for the collector, which at a high GOGC let the heap grow to
// several times the live bytes.
const chunkSize = 32 << 10

type chunk = [chunkSize]byte

var chunks = sync.Pool{New: func() any { return new(chunk) }}

// bodyBudget bounds what all the reads of one Provider hold at once beyond
// their first chunk: the body cap bounds one answer, this bounds a flood of
// them however many calls the server admits.
const bodyBudget = 64 << 20

var errBodyBudget = errors.New("openai: response bodies over the memory budget")

// bodyReader reads success bodies under a per-body cap and a memory budget
// shared by every concurrent read.
type bodyReader struct {
	limit int64        // a body's cap (upstream.CapBodies enforces it)
	left  atomic.Int64 // budget bytes not held by a read
}

func newBodyReader(limit int64) *bodyReader {
	r := &bodyReader{limit: limit}
	r.left.Store(max(bodyBudget, 2*limit)) // one body at the cap always fits
	return r
}

// decode reads a body whole and decodes it into dst. A chunk it cannot take
// from the budget fails the read with errBodyBudget.
func (r *bodyReader) decode(body io.Reader, dst any) error {
	var (
		stack [4]*chunk
		parts = append(stack[:0], chunks.Get().(*chunk))
		n     int   // bytes in the last part
		held  int64 // budget taken
	)
	defer func() {
		for _, c := range parts {
			chunks.Put(c)
		}
		r.left.Add(held)
	}()
	take := func(b int64) bool {
		if r.left.Add(-b) < 0 {
			r.left.Add(b)
			return false
		}
		held += b
		return true
	}
	for {
		if n == chunkSize {
			if !take(chunkSize) {
				return errBodyBudget
			}
			parts, n = append(parts, chunks.Get().(*chunk)), 0
		}
		m, err := body.Read(parts[len(parts)-1][n:])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if len(parts) == 1 {
		return json.Unmarshal(parts[0][:n], dst)
	}
	size := (len(parts)-1)*chunkSize + n
	if !take(int64(size)) {
		return errBodyBudget
	}
	whole := make([]byte, 0, size)
	for _, c := range parts[:len(parts)-1] {
		whole = append(whole, c[:]...)
	}
	return json.Unmarshal(append(whole, parts[len(parts)-1][:n]...), dst)
}
