package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestUserCommandsEndToEnd: users are created, listed and disabled with
// the CLI against a real server; a token names its user, is refused a role
// the user lacks, and fails once the user is disabled.
func TestUserCommandsEndToEnd(t *testing.T) {
	h := startHarness(t)
	h.mustCLI("user", "create", "bob", "--role", "operator", "--role", "auditor")
	if out, err := h.runCLI("user", "create", "bob", "--role", "operator"); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Fatalf("second user bob: %v %q", err, out)
	}
	if out, err := h.runCLI("user", "create", "carol", "--role", "wizard"); err == nil || !strings.Contains(err.Error(), "unknown role") {
		t.Fatalf("user with an unknown role: %v %q", err, out)
	}
	var bob struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(h.mustCLI("token", "create", "--name", "bob-laptop", "--role", "operator", "--user", "bob", "-o", "json")), &bob); err != nil {
		t.Fatal(err)
	}
	if out, err := h.runCLI("token", "create", "--name", "bob-admin", "--role", "admin", "--user", "bob"); err == nil || !strings.Contains(err.Error(), "does not hold role admin") {
		t.Fatalf("token beyond its user's roles: %v %q", err, out)
	}
	if out := h.mustCLI("token", "list"); !strings.Contains(out, "OWNER") || !strings.Contains(out, "bob-laptop") || !strings.Contains(out, "bob ") {
		t.Fatalf("token list does not show the owner:\n%s", out)
	}
	if out := h.mustCLI("user", "list"); !strings.Contains(out, "bob") || !strings.Contains(out, "operator,auditor") || !strings.Contains(out, "admin") {
		t.Fatalf("user list:\n%s", out)
	}
	h.mustCLI("device", "list", "--token", bob.Token)
	if out := h.mustCLI("user", "disable", "bob"); !strings.Contains(out, "revoked 1 token(s)") {
		t.Fatalf("user disable: %q", out)
	}
	if out, err := h.runCLI("device", "list", "--token", bob.Token); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("a disabled user's token: %v %q", err, out)
	}
}
