package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// RetryPolicy bounds how the client retries a request that got no answer
// or a temporary failure (429, 5xx). Definite answers (404, 401, a bad
// signature) are never retried, so a device does not hammer a server that
// answers 404 forever. The zero value means the defaults.
type RetryPolicy struct {
	// Attempts is the total number of tries per request, first included.
	// Default 4; 1 disables retries.
	Attempts int
	// BaseDelay is the delay before the second try; it doubles each time
	// up to MaxDelay. Defaults 500ms and 30s. Each delay is jittered to a
	// random value between half and all of it; a server's Retry-After
	// raises it (still capped at MaxDelay).
	BaseDelay, MaxDelay time.Duration
	// Sleep waits d or until ctx is done, returning ctx.Err() then. Tests
	// inject a fake; default a timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = 4
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = 500 * time.Millisecond
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = 30 * time.Second
	}
	if p.MaxDelay < p.BaseDelay {
		p.MaxDelay = p.BaseDelay
	}
	if p.Sleep == nil {
		p.Sleep = sleepCtx
	}
	return p
}

// delay returns the jittered wait before try number n+1 (n ≥ 1 tries done).
func (p RetryPolicy) delay(n int, retryAfter time.Duration) time.Duration {
	d := p.BaseDelay
	for i := 1; i < n && d < p.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, p.MaxDelay)
	d = d/2 + rand.N(d/2+1)
	if retryAfter > d {
		d = min(retryAfter, p.MaxDelay)
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retry runs fn until it succeeds, fails with an error that is not
// retryable, the context ends, or the policy's attempts are used up. It
// returns fn's last error.
func (c *transport) retry(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	p := c.retryPolicy
	for n := 1; ; n++ {
		err := fn(ctx)
		if err == nil || !retryable(err) || n >= p.Attempts || ctx.Err() != nil {
			return err
		}
		var ra time.Duration
		var se *ServerError
		if errors.As(err, &se) {
			ra = se.RetryAfter
		}
		d := p.delay(n, ra)
		c.log.Debug("retrying", "op", op, "attempt", n, "delay", d, "err", err)
		if serr := p.Sleep(ctx, d); serr != nil {
			return err
		}
	}
}
