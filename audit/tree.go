package audit

import (
	"encoding/hex"
	"fmt"
	"math/bits"

	"golang.org/x/mod/sumdb/tlog"
)

// emptyTreeHash is the RFC 6962 hash of the empty tree, SHA-256("").
var emptyTreeHash = tlog.Hash{
	0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14,
	0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
	0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
	0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
}

// builder grows a Merkle tree one leaf at a time keeping only its right
// edge: the hashes of the maximal complete subtrees that cover [0, size),
// left to right (a "compact range"). Memory is O(log size).
type builder struct {
	size  int64
	stack []tlog.Hash
}

// newBuilder starts a builder at size with the given frontier, the hashes
// of the complete subtrees covering [0, size) from left to right (see
// frontierIndexes).
func newBuilder(size int64, frontier []tlog.Hash) (*builder, error) {
	if size < 0 {
		return nil, fmt.Errorf("tree size %d is negative", size)
	}
	if want := bits.OnesCount64(uint64(size)); len(frontier) != want {
		return nil, fmt.Errorf("a tree of size %d needs %d prefix hashes, have %d", size, want, len(frontier))
	}
	return &builder{size: size, stack: append([]tlog.Hash(nil), frontier...)}, nil
}

// add appends the record with leaf hash leaf and returns the hashes tlog
// stores for it, in storage order from tlog.StoredHashIndex(0, size): the
// leaf hash, then the hashes of the subtrees the record completes.
func (b *builder) add(leaf tlog.Hash) []tlog.Hash {
	hashes := []tlog.Hash{leaf}
	h := leaf
	for n := b.size; n&1 == 1; n >>= 1 {
		h = tlog.NodeHash(b.stack[len(b.stack)-1], h)
		b.stack = b.stack[:len(b.stack)-1]
		hashes = append(hashes, h)
	}
	b.stack = append(b.stack, h)
	b.size++
	return hashes
}

// root returns the RFC 6962 tree hash of the records added so far.
func (b *builder) root() tlog.Hash {
	if b.size == 0 {
		return emptyTreeHash
	}
	h := b.stack[len(b.stack)-1]
	for i := len(b.stack) - 2; i >= 0; i-- {
		h = tlog.NodeHash(b.stack[i], h)
	}
	return h
}

// frontier returns a copy of the current right edge.
func (b *builder) frontier() []tlog.Hash { return append([]tlog.Hash(nil), b.stack...) }

// frontierIndexes returns the tlog stored-hash indexes of the maximal
// complete subtrees covering [0, n), left to right. These are exactly the
// hashes tlog.TreeHash(n) reads.
func frontierIndexes(n int64) []int64 {
	var idx []int64
	var lo int64
	for level := 62; level >= 0; level-- {
		if n&(1<<level) != 0 {
			idx = append(idx, tlog.StoredHashIndex(level, lo>>level))
			lo += 1 << level
		}
	}
	return idx
}

// hashHex formats a hash as lowercase hex.
func hashHex(h tlog.Hash) string { return hex.EncodeToString(h[:]) }

// parseHashHex parses a 64-digit hex hash.
func parseHashHex(s string) (tlog.Hash, error) {
	var h tlog.Hash
	if len(s) != 2*tlog.HashSize {
		return h, fmt.Errorf("hash %.80q is not %d hex digits", s, 2*tlog.HashSize)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("hash %.80q is not hex", s)
	}
	return h, nil
}

func hashesHex(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = hashHex(h)
	}
	return out
}

func parseHashesHex(ss []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(ss))
	for i, s := range ss {
		h, err := parseHashHex(s)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}
