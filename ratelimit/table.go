package ratelimit

// table is an open-addressing hash set of keyed 64-bit hashes with a counter
// each, built for one job: count events per key within one window, then be
// dropped whole. It replaces a map[uint64]uint32 because
//   - a lookup touches one cache line (the slot) instead of a map group's
//     control word, its slot and the table directory, which at a million keys
//     are all cache misses;
//   - the hash is already uniform, so it indexes the table directly without
//     being hashed again;
//   - nothing is ever deleted one by one, so there are no tombstones and
//     linear probing stays short.
//
// The zero table is empty and allocates nothing.
type table struct {
	slots []slot // length 0 or a power of two
	n     int    // occupied slots
}

// slot is one key's counter. h == 0 marks an empty slot; keys whose hash is
// 0 are stored as 1 (see fold), one more collision in 2⁶⁴.
type slot struct {
	h uint64
	c uint32
}

// minSlots is the first allocation: small, so a shard holding a few keys
// costs a few hundred bytes.
const minSlots = 16

// fold maps the hash to a non-zero value, as 0 marks an empty slot.
func fold(h uint64) uint64 {
	if h == 0 {
		return 1
	}
	return h
}

// find returns the slot of h, or the empty slot where h would go (nil if the
// table has no slots yet). h must be folded.
func (t *table) find(h uint64) *slot {
	if len(t.slots) == 0 {
		return nil
	}
	mask := uint64(len(t.slots) - 1)
	// The shard index takes the top bits of h; the table index takes the
	// bottom ones, so both are uniform and independent.
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.h == h || s.h == 0 {
			return s
		}
	}
}

// set stores c as h's count, growing the table so it never fills beyond 3/4
// (linear probing stays at a couple of probes). h must be folded.
func (t *table) set(h uint64, c uint32) {
	s := t.find(h)
	if s != nil && s.h == h {
		s.c = c
		return
	}
	if (t.n+1)*4 > len(t.slots)*3 {
		t.grow()
		s = t.find(h)
	}
	s.h, s.c = h, c
	t.n++
}

func (t *table) grow() {
	old := t.slots
	t.slots = make([]slot, max(minSlots, 2*len(old)))
	mask := uint64(len(t.slots) - 1)
	for _, o := range old {
		if o.h == 0 {
			continue
		}
		i := o.h & mask
		for t.slots[i].h != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = o
	}
}
