package ui

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/tufota/tufota/access"
)

// TestRolloutActionsActAsTheUser: a rollout command from the dashboard
// acts as the user behind the signed-in token, not the token's name, so
// that the rollout service's two-person rule compares people (issue #13,
// defect 10) here as through the API.
func TestRolloutActionsActAsTheUser(t *testing.T) {
	h := newHarness(t)
	h.tokens.byToken["tok-"+string(access.RoleOperator)] = access.Principal{Name: "alice-ci", Role: access.RoleOperator, TokenID: "id-operator", UserID: "u-alice", User: "alice"}
	sc, csrf := h.signIn(access.RoleOperator)
	rec := h.do(http.MethodPost, "/ui/rollouts/r-1/approve", url.Values{"reason": {"test"}, "csrf": {csrf}}, sc)
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("approve: status = %d; body %s", rec.Code, rec.Body)
	}
	if len(h.rollouts.commands) != 1 || h.rollouts.commands[0] != "approve r-1 by alice" {
		t.Fatalf("commands = %q, want approve r-1 by alice", h.rollouts.commands)
	}
}
