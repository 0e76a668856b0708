package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/signer"
)

// TestRefusedRequestsWithNULAreAudited sends a release name and a device
// ID holding a NUL byte: the requests are refused, and each refusal is in
// the audit log with the offending value escaped (the append used to fail
// with "contains a NUL byte", losing the record).
func TestRefusedRequestsWithNULAreAudited(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()

	r, ct := pushBody(t, signer.PushRequest{Name: "bad\x00name", Version: "1.0.0", Hardware: []string{"pump-a"}, File: "fw.bin"}, []byte("firmware"))
	req := httptest.NewRequest(http.MethodPost, ts.http.URL+"/api/v1/releases", r)
	req.RequestURI = ""
	req.Header.Set("Content-Type", ct)
	if resp, body := ts.do(t, req, ts.tokens[access.RoleReleaseEngineer]); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("push with a NUL in the name: status = %d (%s), want 400", resp.StatusCode, body)
	}
	req = jsonRequest(http.MethodPost, ts.http.URL+"/api/v1/devices", `{"id":"dev\u0000x","hardware":"pump-a"}`)
	req.RequestURI = ""
	if resp, body := ts.do(t, req, ts.tokens[access.RoleOperator]); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("register with a NUL in the ID: status = %d (%s), want 400", resp.StatusCode, body)
	}

	for _, tc := range []struct{ action, object string }{
		{"release.push", `"release/bad\x00name@1.0.0"`},
		{"device.register", `"device/dev\x00x"`},
	} {
		entries, err := ts.cfg.Audit.List(ctx, audit.Filter{Action: tc.action})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range entries {
			if e.Object == tc.object && e.Outcome == audit.OutcomeFailed && e.Details[audit.EscapedKey] != "" {
				found = true
			}
		}
		if !found {
			t.Errorf("no failed %s entry with the escaped object %s in %+v", tc.action, tc.object, entries)
		}
	}
	if rep, err := ts.cfg.Audit.Verify(ctx); err != nil || !rep.OK {
		t.Errorf("audit verify after escaped entries: %+v, %v", rep, err)
	}
}
