package backup

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestValueRoundTrip: every value type a row can hold comes back exactly.
func TestValueRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   any
		want any
	}{
		{nil, nil},
		{int64(-1 << 62), int64(-1 << 62)},
		{int64(1773000000123456789), int64(1773000000123456789)}, // unix nanoseconds survive
		{"", ""},
		{`{"json":"in text","q":"\u2028<&>"}`, `{"json":"in text","q":"\u2028<&>"}`},
		{"bad utf-8 \xff\xfe", "bad utf-8 \xff\xfe"},
		{[]byte("bytes"), "bytes"},
		{[]byte{0xff, 0}, "\xff\x00"},
		{true, int64(1)},
		{1.5, 1.5},
	} {
		enc, err := encodeValue(tc.in)
		if err != nil {
			t.Fatalf("encodeValue(%#v): %v", tc.in, err)
		}
		b, err := json.Marshal(enc)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeValue(b)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("round trip of %#v via %s = %#v, %v; want %#v", tc.in, b, got, err, tc.want)
		}
	}
	if _, err := encodeValue(struct{}{}); err == nil {
		t.Error("encodeValue accepted an unknown type")
	}
}

// FuzzDecodeValue: a row value from a (possibly hostile) backup file never
// panics the decoder.
func FuzzDecodeValue(f *testing.F) {
	for _, s := range []string{`null`, `12`, `"x"`, `{"b64":"AAE="}`, `{"text":"t"}`, `{"float":"1e3"}`, `{"b64":1}`, `{}`, `[`, `-`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeValue(b)
	})
}
