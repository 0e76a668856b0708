package release

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tufota/tufota/e2e"
	"github.com/tufota/tufota/server"
)

// TestStatusCommand: on a fresh repository `tufota status` lists the four
// roles, who signs each, and no warning; an auditor may read it.
func TestStatusCommand(t *testing.T) {
	h := e2e.Start(t)
	var st server.Status
	if err := json.Unmarshal([]byte(h.MustCLI("status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	online := map[string]bool{}
	for _, r := range st.Roles {
		online[r.Role] = r.Online
		if r.Warning != "" || !r.Expires.After(st.Time) {
			t.Errorf("fresh repository: %s expires %s, warning %q", r.Role, r.Expires, r.Warning)
		}
	}
	if len(st.Roles) != 4 || online["root"] || online["targets"] || !online["snapshot"] || !online["timestamp"] || len(st.Warnings) != 0 {
		t.Fatalf("status = %+v, want root and targets offline, snapshot and timestamp online, no warnings", st)
	}
	if st.Leader != "leader" && st.Leader != "follower" { // the first lease attempt may not have run yet
		t.Errorf("leader role = %q, want leader or follower", st.Leader)
	}
	out := h.MustCLI("status")
	if !strings.Contains(out, "key holders (offline)") || !strings.Contains(out, "server (online)") {
		t.Errorf("status table:\n%s", out)
	}
}
