package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota/access"
)

// testCA is a CA that issues device client certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) issue(t *testing.T, deviceID string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: deviceID},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestTransportSecurity(t *testing.T) {
	ts := newTestServer(t)
	manufacturer := newTestCA(t, "pump maker device CA")
	rogue := newTestCA(t, "rogue CA")
	pool := x509.NewCertPool()
	pool.AddCert(manufacturer.cert)
	serverCert, leaf, err := SelfSignedCertificate([]string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(ts.Handler())
	srv.TLS = TLSConfig(serverCert, pool)
	srv.StartTLS()
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(leaf)

	get := func(cfg *tls.Config, token string) (*http.Response, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/whoami", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return c.Do(req)
	}

	t.Run("TLS 1.1 refused", func(t *testing.T) {
		_, err := get(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, ts.tokens[access.RoleAdmin])
		if err == nil || !strings.Contains(err.Error(), "protocol version") {
			t.Fatalf("TLS 1.1 client: err = %v, want a protocol version failure", err)
		}
	})
	t.Run("TLS 1.3 by default, HSTS set", func(t *testing.T) {
		resp, err := get(&tls.Config{RootCAs: roots}, ts.tokens[access.RoleAdmin])
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.TLS.Version != tls.VersionTLS13 {
			t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(resp.TLS.Version))
		}
		if h := resp.Header.Get("Strict-Transport-Security"); !strings.Contains(h, "max-age=") {
			t.Errorf("Strict-Transport-Security = %q", h)
		}
	})
	t.Run("TLS 1.2 only with forward-secret AEAD suites", func(t *testing.T) {
		_, err := get(&tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}, "")
		if err == nil {
			t.Fatal("a TLS 1.2 client offering only non-FS or CBC suites connected")
		}
	})
	t.Run("device cert from untrusted CA refused", func(t *testing.T) {
		// Present the rogue certificate even though the server's request
		// names other CAs (Go's client would otherwise send none).
		cert := rogue.issue(t, "pump-666")
		resp, err := get(&tls.Config{RootCAs: roots, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }}, "")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("a client certificate from a rogue CA was accepted: status %d", resp.StatusCode)
		}
		if !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("err = %v, want a certificate failure", err)
		}
	})
	t.Run("device cert from manufacturer CA identifies the device", func(t *testing.T) {
		resp, err := get(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{manufacturer.issue(t, "pump-007")}}, "")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var p access.Principal
		if err := json.Unmarshal(body, &p); err != nil || resp.StatusCode != 200 {
			t.Fatalf("whoami: %d %s", resp.StatusCode, body)
		}
		if p.Role != access.RoleDevice || p.DeviceID != "pump-007" {
			t.Fatalf("principal = %+v, want device pump-007", p)
		}
	})
}
