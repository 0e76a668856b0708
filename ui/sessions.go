package ui

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"

	"github.com/tufota/tufota/access"
)

// Session cookie and lifetimes.
const (
	// SessionCookie names the session cookie. The __Host- prefix makes the
	// browser refuse it unless it is Secure, has Path=/ and no Domain, so
	// that no sibling host or plain-HTTP page can plant one (fixation).
	SessionCookie = "__Host-tufota_session"
	// loginCookie carries the sign-in form's CSRF token (double submit):
	// the sign-in form has no session yet.
	loginCookie = "__Host-tufota_login"

	DefaultIdleTimeout = 30 * time.Minute
	DefaultMaxAge      = 12 * time.Hour
	// maxSessions bounds the store; the oldest sessions go first.
	maxSessions = 10000
	// idBytes is the size of a session ID and of a CSRF token: 256 bits.
	idBytes = 32
)

// Session is one signed-in person. It holds the principal the token
// authenticated as and the token's ID, never the token itself.
type Session struct {
	Principal access.Principal
	// CSRF is the token every form of this session carries.
	CSRF     string
	Created  time.Time
	LastSeen time.Time
	key      [sha256.Size]byte
}

// Sessions keeps sessions in memory, keyed by the SHA-256 of their IDs (a
// memory dump does not yield a usable cookie). Sessions live on one
// server: behind several replicas a load balancer must keep a person on
// one (sticky sessions), or they sign in again where they land. It is safe
// for concurrent use.
type Sessions struct {
	idle, max time.Duration
	now       func() time.Time

	mu sync.Mutex
	m  map[[sha256.Size]byte]*Session
}

// NewSessions returns an empty store; idle and max of zero or less take the
// defaults.
func NewSessions(idle, max time.Duration, now func() time.Time) *Sessions {
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	if max <= 0 {
		max = DefaultMaxAge
	}
	if now == nil {
		now = time.Now
	}
	return &Sessions{idle: idle, max: max, now: now, m: make(map[[sha256.Size]byte]*Session)}
}

// randomToken returns 256 random bits, base64url without padding.
func randomToken() string {
	b := make([]byte, idBytes)
	if _, err := rand.Read(b); err != nil {
		panic("ui: crypto/rand: " + err.Error()) // never fails on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// parseID decodes a session cookie's value: 32 bytes in base64url. Any
// other value is not a session ID.
func parseID(v string) ([idBytes]byte, bool) {
	var id [idBytes]byte
	if len(v) != base64.RawURLEncoding.EncodedLen(idBytes) {
		return id, false
	}
	n, err := base64.RawURLEncoding.Strict().Decode(id[:], []byte(v))
	if err != nil || n != idBytes {
		return id, false
	}
	return id, true
}

func keyOf(id [idBytes]byte) [sha256.Size]byte { return sha256.Sum256(id[:]) }

// Create starts a session for p and returns its ID (the cookie's value)
// and the session. Expired sessions are dropped, and the oldest one when
// the store is full.
func (s *Sessions) Create(p access.Principal) (string, *Session) {
	id := randomToken()
	raw, _ := parseID(id)
	now := s.now()
	se := &Session{Principal: p, CSRF: randomToken(), Created: now, LastSeen: now, key: keyOf(raw)}
	s.mu.Lock()
	defer s.mu.Unlock()
	var oldest *Session
	for k, o := range s.m {
		if s.expired(o, now) {
			delete(s.m, k)
			continue
		}
		if oldest == nil || o.Created.Before(oldest.Created) {
			oldest = o
		}
	}
	if len(s.m) >= maxSessions && oldest != nil {
		delete(s.m, oldest.key)
	}
	s.m[se.key] = se
	return id, se
}

func (s *Sessions) expired(se *Session, now time.Time) bool {
	return now.Sub(se.LastSeen) >= s.idle || now.Sub(se.Created) >= s.max
}

// Get returns the live session with this cookie value and marks it used;
// false for an unknown, malformed or expired one (an expired one is
// dropped).
func (s *Sessions) Get(cookie string) (Session, bool) { return s.get(cookie, true) }

// Peek is Get without marking the session used: an open event stream does
// not keep an unattended session alive.
func (s *Sessions) Peek(cookie string) (Session, bool) { return s.get(cookie, false) }

func (s *Sessions) get(cookie string, touch bool) (Session, bool) {
	raw, ok := parseID(cookie)
	if !ok {
		return Session{}, false
	}
	k := keyOf(raw)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.m[k]
	if !ok {
		return Session{}, false
	}
	if s.expired(se, now) {
		delete(s.m, k)
		return Session{}, false
	}
	if touch {
		se.LastSeen = now
	}
	return *se, true
}

// Delete ends the session with this cookie value, if any.
func (s *Sessions) Delete(cookie string) {
	raw, ok := parseID(cookie)
	if !ok {
		return
	}
	s.mu.Lock()
	delete(s.m, keyOf(raw))
	s.mu.Unlock()
}

// Len returns the number of sessions held, expired ones included until
// they are next looked at.
func (s *Sessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// validCSRF compares a submitted CSRF token with the session's in
// constant time; an empty one never matches.
func validCSRF(want, got string) bool {
	if want == "" || got == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}
