package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Alert is one security event sent to the alert webhook as JSON.
type Alert struct {
	Kind    string            `json:"kind"`
	Time    time.Time         `json:"time"`
	Message string            `json:"message"`
	Details map[string]string `json:"details,omitempty"`
}

// Alert kinds.
const (
	AlertAuthFailures         = "auth.repeated-failures"
	AlertDeviceVerification   = "device.verification-failure"
	AlertRolloutPaused        = "rollout.auto-paused"
	AlertOfflineRoleExpiring  = "tuf.offline-role-expiring"
	alertSignatureHeader      = "X-Tufota-Signature"
	alertTimestampHeader      = "X-Tufota-Timestamp"
	authFailureAlertThreshold = 5
	authFailureFloodThreshold = 200
	authFailureWindow         = 5 * time.Minute
	maxFailureSources         = 10000
)

// Alerter posts alerts to a webhook, signed with HMAC-SHA256 over
// "<timestamp>.<body>" in the X-Tufota-Signature header ("sha256=<hex>").
// Delivery is asynchronous, retried three times, and never blocks a
// request. It is safe for concurrent use; a nil *Alerter sends nothing.
type Alerter struct {
	url    string
	secret []byte
	http   *http.Client
	log    *slog.Logger
	now    func() time.Time
	wg     sync.WaitGroup

	mu       sync.Mutex
	failures *failureLog          // source → recent auth failures, bounded
	alerted  map[string]time.Time // dedupe key → last alert (offline roles)
}

// NewAlerter returns an Alerter for url. An empty secret is refused: alerts
// are always signed.
func NewAlerter(url string, secret []byte, hc *http.Client, log *slog.Logger) (*Alerter, error) {
	if url == "" || len(secret) < 16 {
		return nil, fmt.Errorf("alert webhook: need a URL and a secret of at least 16 bytes")
	}
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	if log == nil {
		log = slog.Default()
	}
	return &Alerter{url: url, secret: secret, http: hc, log: log, now: time.Now,
		failures: newFailureLog(maxFailureSources), alerted: map[string]time.Time{}}, nil
}

// SignAlert returns the signature header value for a body sent at ts.
func SignAlert(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Send delivers a in the background.
func (a *Alerter) Send(a0 Alert) {
	if a == nil {
		return
	}
	if a0.Time.IsZero() {
		a0.Time = a.now().UTC()
	}
	body, err := json.Marshal(a0)
	if err != nil {
		a.log.Error("alert: marshal", "err", err)
		return
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for attempt := 0; attempt < 3; attempt++ {
			if attempt > 0 {
				time.Sleep(time.Duration(attempt) * time.Second)
			}
			if err := a.post(body); err == nil {
				return
			} else if attempt == 2 {
				a.log.Error("alert: delivery failed", "kind", a0.Kind, "err", err)
			}
		}
	}()
}

func (a *Alerter) post(body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(a.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(alertTimestampHeader, ts)
	req.Header.Set(alertSignatureHeader, SignAlert(a.secret, ts, body))
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

// Wait waits for alerts in flight (for shutdown and tests).
func (a *Alerter) Wait() {
	if a != nil {
		a.wg.Wait()
	}
}

// once reports whether key has not alerted within every; it records it.
func (a *Alerter) once(key string, every time.Duration) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if last, ok := a.alerted[key]; ok && now.Sub(last) < every {
		return false
	}
	a.alerted[key] = now
	return true
}

// AuthFailure counts an authentication failure from source and alerts
// when a source fails repeatedly within the window (IPv6 sources count per
// /64, which one host can rotate within), and when failures from all
// sources together exceed authFailureFloodThreshold within the window (many
// sources, each below the threshold). What it remembers is bounded
// (failurelog.go), whatever the number of sources.
func (a *Alerter) AuthFailure(source, reason string) {
	if a == nil {
		return
	}
	key := failureKey(source)
	a.mu.Lock()
	n, alertSource, total, alertFlood := a.failures.add(key, a.now())
	a.mu.Unlock()
	if alertSource {
		a.Send(Alert{Kind: AlertAuthFailures, Message: fmt.Sprintf("%d authentication failures from %s within %s", n, key, authFailureWindow),
			Details: map[string]string{"source": key, "last_reason": reason}})
	}
	if alertFlood {
		a.Send(Alert{Kind: AlertAuthFailures, Message: fmt.Sprintf("%d authentication failures from many sources within %s", total, authFailureWindow),
			Details: map[string]string{"source": "*", "last_source": key, "last_reason": reason}})
	}
}

// verificationCodes are device error codes that may mean an attack. The
// metadata_* codes name TUF metadata a device refused (client.ErrorCode):
// rolled back, expired (a freeze), badly signed, oversized.
var verificationCodes = map[string]bool{
	"hash_mismatch": true, "length_mismatch": true, "not_signed": true, "metadata": true, "wrong_hardware": true, "not_newer": true,
	"metadata_rollback": true, "metadata_expired": true, "metadata_signature": true, "metadata_oversized": true,
}

// DeviceReport alerts when a device reports a verification failure.
func (a *Alerter) DeviceReport(deviceID, state, code, target, message string) {
	if a == nil || state != "failed" || !verificationCodes[code] {
		return
	}
	what := target
	if what == "" {
		what = "TUF metadata"
	}
	a.Send(Alert{Kind: AlertDeviceVerification, Message: fmt.Sprintf("device %s refused %s: %s (possible attack)", deviceID, what, code),
		Details: map[string]string{"device": deviceID, "error_code": code, "target": target, "message": message}})
}

// RolloutPaused alerts when the controller pauses a rollout on its own.
func (a *Alerter) RolloutPaused(rolloutID, reason string) {
	if a == nil {
		return
	}
	a.Send(Alert{Kind: AlertRolloutPaused, Message: fmt.Sprintf("rollout %s paused: %s", rolloutID, reason),
		Details: map[string]string{"rollout": rolloutID, "reason": reason}})
}

// OfflineRoleExpiring alerts (at most daily per role) when an offline role
// expires within the warning period.
func (a *Alerter) OfflineRoleExpiring(role string, expires time.Time) {
	if a == nil || !a.once("expiry:"+role, 24*time.Hour) {
		return
	}
	a.Send(Alert{Kind: AlertOfflineRoleExpiring, Message: fmt.Sprintf("%s metadata expires %s; sign a new version with the offline keys", role, expires.UTC().Format(time.RFC3339)),
		Details: map[string]string{"role": role, "expires": expires.UTC().Format(time.RFC3339)}})
}
