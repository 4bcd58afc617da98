package ratelimit

import (
	"math/rand/v2"
	"testing"
	"unsafe"
)

func TestTableAgainstMap(t *testing.T) {
	// The table must agree with a map on every key through several growths,
	// including keys that share a home slot, and must not find absent keys.
	const n = 3000
	rng := rand.New(rand.NewPCG(3, 4))
	tests := []struct {
		name string
		key  func(i int) uint64
	}{
		{"random", func(int) uint64 { return fold(rng.Uint64()) }},
		{"same home slot", func(i int) uint64 { return uint64(i+1) << 40 }},
		{"consecutive", func(i int) uint64 { return uint64(i + 1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := make([]uint64, n)
			for i := range keys {
				keys[i] = tt.key(i)
			}
			var tab table
			want := make(map[uint64]uint32)
			for i, h := range keys {
				want[h] += uint32(i%5 + 1)
				tab.set(h, want[h])
				if i%3 == 0 { // update an earlier key in place
					h0 := keys[i/2]
					want[h0]++
					tab.set(h0, want[h0])
				}
			}
			if tab.n != len(want) {
				t.Fatalf("n = %d, want %d", tab.n, len(want))
			}
			if l := len(tab.slots); l&(l-1) != 0 || tab.n*4 > l*3 {
				t.Fatalf("%d slots for %d keys: not a power of two or over 3/4 full", l, tab.n)
			}
			for h, c := range want {
				s := tab.find(h)
				if s == nil || s.h != h || s.c != c {
					t.Fatalf("key %#x: slot %+v, want count %d", h, s, c)
				}
			}
			absent := uint64(0xdead_beef_0000_0001)
			if _, ok := want[absent]; ok {
				t.Fatal("test key collides with the absent key")
			}
			if s := tab.find(absent); s == nil || s.h != 0 {
				t.Fatalf("absent key found slot %+v, want an empty one", s)
			}
		})
	}
}

func TestTableEmptyAndFold(t *testing.T) {
	var tab table
	if s := tab.find(1); s != nil {
		t.Fatalf("empty table found %+v", s)
	}
	if fold(0) == 0 || fold(7) != 7 {
		t.Fatalf("fold(0) = %d, fold(7) = %d", fold(0), fold(7))
	}
	tab.set(fold(0), 9)
	if s := tab.find(fold(0)); s == nil || s.c != 9 {
		t.Fatalf("hash 0 not stored: %+v", s)
	}
	if len(tab.slots) != minSlots {
		t.Fatalf("first allocation %d slots, want %d", len(tab.slots), minSlots)
	}
}

func TestShardIsCacheLineMultiple(t *testing.T) {
	if sz := unsafe.Sizeof(shard{}); sz%64 != 0 {
		t.Fatalf("shard is %d bytes, not a multiple of 64", sz)
	}
}
