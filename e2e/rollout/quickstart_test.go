package rollout

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota/e2e"
)

// TestQuickstart runs the README's first command (with a smaller fleet):
// init, server, a signed release and a canary rollout over simulated devices
// that must complete, ending with the history.
func TestQuickstart(t *testing.T) {
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := e2e.Run(ctx, []string{"quickstart", "--devices", "8", "--image-size", "65536"}, map[string]string{}, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("quickstart: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	for _, want := range []string{"completed; all 8 devices run pump-fw@1.1.0", "MILESTONE", "100%"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("quickstart output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(errOut.String(), "level=WARN") || strings.Contains(errOut.String(), "level=ERROR") {
		t.Errorf("quickstart logged warnings or errors:\n%s", errOut.String())
	}
}
