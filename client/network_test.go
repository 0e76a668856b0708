package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/collectors"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tufota/tufota/client"
)

// startToxiproxy puts an in-process toxiproxy between the client and
// upstream (host:port) and returns the proxy; the listed toxics (JSON as
// toxiproxy's API takes them) are applied to every connection.
func startToxiproxy(t *testing.T, upstream string, toxics ...string) *toxiproxy.Proxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	srv.Metrics.ProxyMetrics = collectors.NewProxyMetricCollectors()
	p := toxiproxy.NewProxy(srv, "tufota", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	for _, tx := range toxics {
		if _, err := p.Toxics.AddToxicJson(strings.NewReader(tx)); err != nil {
			t.Fatalf("toxic %s: %v", tx, err)
		}
	}
	return p
}

// countingTransport counts the response body bytes the client reads from
// target downloads: what crossed the device's link, whatever a proxy
// buffered and dropped.
type countingTransport struct {
	http.RoundTripper
	n atomic.Int64
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := c.RoundTripper.RoundTrip(req)
	if err == nil && strings.HasPrefix(req.URL.Path, "/tuf/targets/") {
		res.Body = &countingBody{ReadCloser: res.Body, n: &c.n}
	}
	return res, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// proxiedClient is a client that reaches s through proxy p, with its own
// transport (no connection reuse across tests); the returned counter says
// how many target bytes it received.
func proxiedClient(t *testing.T, s *server, p *toxiproxy.Proxy, edit func(*client.Config)) (*client.Client, *atomic.Int64) {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	ct := &countingTransport{RoundTripper: tr}
	c := s.client(t, func(cfg *client.Config) {
		cfg.ServerURL = "http://" + p.Listen
		cfg.HTTPClient = &http.Client{Transport: ct}
		if edit != nil {
			edit(cfg)
		}
	})
	return c, &ct.n
}

func TestNetworkFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPING network-fault tests: -short")
	}
	t.Parallel()
	const size = 1 << 20
	tests := []struct {
		name   string
		toxics []string
		// maxExtra bounds the bytes received beyond the image size.
		maxExtra int64
	}{
		{"latency and jitter", []string{`{"type":"latency","attributes":{"latency":40,"jitter":20}}`}, 0},
		{"bandwidth limit", []string{`{"type":"bandwidth","attributes":{"rate":4096}}`}, 0},
		{"slow close", []string{`{"type":"slow_close","attributes":{"delay":300}}`}, 0},
		{"sliced packets", []string{`{"type":"slicer","attributes":{"average_size":700,"size_variation":500,"delay":10}}`}, 0},
		// Every connection is cut after 300 kB: the download completes by
		// resuming, fetching each byte once (plus what was in flight).
		{"connections cut mid-body", []string{`{"type":"limit_data","attributes":{"bytes":300000}}`}, size / 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, h, upd := downloadSetup(t, size)
			p := startToxiproxy(t, s.srv.Listener.Addr().String(), tt.toxics...)
			c, received := proxiedClient(t, s, p, func(cfg *client.Config) { cfg.Retry.Attempts = 10 })
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			// Check goes through the proxy too (metadata and the device API).
			got, err := c.Check(ctx)
			if err != nil || got == nil || got.Target != upd.Target {
				t.Fatalf("Check through proxy = %+v, %v", got, err)
			}
			dst := filepath.Join(t.TempDir(), "fw.bin")
			if err := c.Download(ctx, got, dst); err != nil {
				t.Fatalf("Download: %v", err)
			}
			data, err := os.ReadFile(dst)
			if err != nil || !bytes.Equal(data, h.data) {
				t.Fatalf("downloaded file differs (err %v)", err)
			}
			if n := received.Load(); n-size > tt.maxExtra {
				t.Fatalf("received %d bytes for %d, more than %d extra", n, size, tt.maxExtra)
			}
		})
	}
}

func TestNetworkFaultsFailCleanly(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPING network-fault tests: -short")
	}
	t.Parallel()
	const size = 1 << 20

	t.Run("black hole hits the stall timeout and the retry cap", func(t *testing.T) {
		t.Parallel()
		s, h, upd := downloadSetup(t, size)
		// timeout 0: data stops flowing and the connection never closes.
		p := startToxiproxy(t, s.srv.Listener.Addr().String(), `{"type":"timeout","attributes":{"timeout":0}}`)
		c, _ := proxiedClient(t, s, p, func(cfg *client.Config) {
			cfg.RequestTimeout = 200 * time.Millisecond
			cfg.Retry.Attempts = 3
		})
		dst := filepath.Join(t.TempDir(), "fw.bin")
		err := c.Download(t.Context(), upd, dst)
		if !errors.Is(err, client.ErrUnreachable) {
			t.Fatalf("Download = %v, want ErrUnreachable", err)
		}
		assertNoFile(t, dst)
		// The requests get through, the answers never come back: each
		// attempt stalls, and the cap stops the client at 3.
		if _, requests := h.stats(); requests != 3 {
			t.Fatalf("%d requests, want the cap of 3", requests)
		}
	})

	t.Run("overall deadline, then resume", func(t *testing.T) {
		t.Parallel()
		s, h, upd := downloadSetup(t, size)
		// 64 kB/s: the 1 MiB image cannot arrive before the deadline.
		p := startToxiproxy(t, s.srv.Listener.Addr().String(), `{"type":"bandwidth","attributes":{"rate":64}}`)
		c, received := proxiedClient(t, s, p, nil)
		dst := filepath.Join(t.TempDir(), "fw.bin")
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		err := c.Download(ctx, upd, dst)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, client.ErrUnreachable) {
			t.Fatalf("Download past its deadline = %v, want context.DeadlineExceeded (not retried)", err)
		}
		assertNoFile(t, dst)
		st, err := os.Stat(client.PartialPath(c, upd))
		if err != nil || st.Size() == 0 {
			t.Fatalf(".part after the deadline = %v, %v; want the bytes that arrived", st, err)
		}
		// The network recovers: the next call resumes.
		p.Toxics.ResetToxics(t.Context())
		if err := c.Download(t.Context(), upd, dst); err != nil {
			t.Fatalf("resumed Download: %v", err)
		}
		if data, _ := os.ReadFile(dst); !bytes.Equal(data, h.data) {
			t.Fatal("resumed file differs from the image")
		}
		_, requests := h.stats()
		if n := received.Load(); requests != 2 || n-size > size/100 {
			t.Fatalf("received %d bytes in %d requests; want 2 requests, under 1%% extra", n, requests)
		}
	})

	t.Run("reset peer", func(t *testing.T) {
		t.Parallel()
		s, _, upd := downloadSetup(t, size)
		p := startToxiproxy(t, s.srv.Listener.Addr().String(), `{"type":"reset_peer","attributes":{"timeout":0}}`)
		c, _ := proxiedClient(t, s, p, func(cfg *client.Config) { cfg.Retry.Attempts = 2 })
		dst := filepath.Join(t.TempDir(), "fw.bin")
		if err := c.Download(t.Context(), upd, dst); !errors.Is(err, client.ErrUnreachable) {
			t.Fatalf("Download = %v, want ErrUnreachable", err)
		}
		if _, err := c.Check(t.Context()); !errors.Is(err, client.ErrUnreachable) {
			t.Fatalf("Check = %v, want ErrUnreachable", err)
		}
		assertNoFile(t, dst)
	})
}
