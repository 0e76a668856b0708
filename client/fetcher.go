package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
)

// metadataFetcher is the fetcher.Fetcher go-tuf's updater uses for
// metadata. Unlike go-tuf's DefaultFetcher it runs on the client's own
// http.Client, honours the check's context, bounds each request by the
// client's request timeout, and never retries a definite answer: a 404 fails
// at once (and ends the root-rotation walk, as the TUF spec wants).
//
// The Repository that owns a metadataFetcher sets ctx before each call
// into go-tuf, under its lock; the fetcher is not safe for concurrent use.
type metadataFetcher struct {
	ctx  context.Context
	t    *transport
	auth func(*http.Request) // adds credentials; nil sends none
}

var _ fetcher.Fetcher = (*metadataFetcher)(nil)

// DownloadFile fetches urlPath and returns at most maxLength bytes. A
// non-200 status is a *metadata.ErrDownloadHTTP, a body over maxLength a
// *metadata.ErrDownloadLengthMismatch, a failed exchange an error wrapping
// ErrUnreachable. The timeout argument is deprecated in go-tuf and ignored.
func (f *metadataFetcher) DownloadFile(urlPath string, maxLength int64, _ time.Duration) ([]byte, error) {
	var data []byte
	err := f.t.retry(f.ctx, "fetch "+urlPath, func(ctx context.Context) error {
		var err error
		data, err = f.fetchOnce(ctx, urlPath, maxLength)
		return err
	})
	return data, err
}

func (f *metadataFetcher) fetchOnce(ctx context.Context, urlPath string, maxLength int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, f.t.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, urlPath, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", urlPath, err)
	}
	if f.auth != nil {
		f.auth(req)
	} else {
		req.Header.Set("User-Agent", userAgent)
	}
	res, err := f.t.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w: %w", urlPath, ErrUnreachable, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		drain(res.Body)
		return nil, &metadata.ErrDownloadHTTP{StatusCode: res.StatusCode, URL: urlPath}
	}
	if cl := res.Header.Get("Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err == nil && n > maxLength {
			return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: Content-Length %d exceeds the limit of %d bytes", urlPath, n, maxLength)}
		}
	}
	data, err := io.ReadAll(io.LimitReader(res.Body, maxLength+1))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w: %w", urlPath, ErrUnreachable, err)
	}
	if int64(len(data)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: body exceeds the limit of %d bytes", urlPath, maxLength)}
	}
	return data, nil
}

// authorize adds the device's bearer token. Every URL the client builds is
// on the configured server, so the token never leaves it.
func (c *Client) authorize(req *http.Request) {
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	req.Header.Set("User-Agent", userAgent)
}

// userAgent names the client in every request.
const userAgent = "tufota-client"

// drain reads a little of an unwanted body so the connection can be reused.
func drain(r io.Reader) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 4096))
}

// retryable reports whether err is worth another attempt: the request got
// no answer, or the server said it was temporarily unable (429, 5xx).
func retryable(err error) bool {
	if errors.Is(err, ErrUnreachable) {
		return true
	}
	var h *metadata.ErrDownloadHTTP
	if errors.As(err, &h) {
		return h.StatusCode == http.StatusTooManyRequests || h.StatusCode >= 500
	}
	var s *ServerError
	if errors.As(err, &s) {
		return s.Status == http.StatusTooManyRequests || s.Status >= 500
	}
	return false
}
