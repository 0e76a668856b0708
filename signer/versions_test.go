package signer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tufota/tufota"
)

// TestPushRefusesEqualSemver pushes versions of one release name: one that
// differs from an existing one only in build metadata has the same semver
// precedence and is refused as already existing; other versions are not.
func TestPushRefusesEqualSemver(t *testing.T) {
	e := newThresholdEnv(t)
	e.push("fw", "1.1.0")
	for _, tc := range []struct {
		version string
		refused bool
	}{
		{"1.1.0+b", true},
		{"1.1.0+build.7", true},
		{"1.1.1+b", false},
		{"1.1.0-rc.1", false},
		{"1.1.0-rc.1+b", true}, // equal to the 1.1.0-rc.1 just pushed
	} {
		_, err := e.rels.Push(context.Background(), PushRequest{Name: "fw", Version: tc.version, Hardware: []string{"hw-a"}, File: "fw.bin"},
			bytes.NewReader([]byte("firmware "+tc.version)), 0, "alice")
		switch {
		case tc.refused && (!errors.Is(err, tufota.ErrConflict) || !strings.Contains(err.Error(), "already exists")):
			t.Errorf("push fw@%s: %v, want a conflict: the version already exists", tc.version, err)
		case !tc.refused && err != nil:
			t.Errorf("push fw@%s: %v", tc.version, err)
		}
	}
	// Another release name may use the same version.
	e.push("other", "1.1.0+b")
}

// TestConcurrentEqualSemverPushes pushes 1.x.0 and 1.x.0+b at the same
// time, again and again: at most one of each pair is ever recorded.
func TestConcurrentEqualSemverPushes(t *testing.T) {
	e := newThresholdEnv(t)
	for i := range 10 {
		versions := []string{fmt.Sprintf("2.%d.0", i), fmt.Sprintf("2.%d.0+b", i)}
		var wg sync.WaitGroup
		for _, v := range versions {
			wg.Go(func() {
				_, _ = e.rels.Push(context.Background(), PushRequest{Name: "race", Version: v, Hardware: []string{"hw-a"}, File: "fw.bin"},
					bytes.NewReader([]byte("firmware "+v)), 0, "alice")
			})
		}
		wg.Wait()
		n := 0
		for _, v := range versions {
			if _, err := e.rels.Get(context.Background(), "race", v); err == nil {
				n++
			}
		}
		if n > 1 {
			t.Fatalf("both %v were recorded", versions)
		}
	}
}
