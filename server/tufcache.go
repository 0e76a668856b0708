package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/sync/singleflight"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// The TUF metadata a device reads is served from memory. Versioned files
// (N.root.json, N.targets.json, N.snapshot.json, N.ROLE.json) never change
// once written, so a copy is kept until evicted; timestamp.json and
// root.json change, so this server's own writes replace the copy at once
// (signer.Repository.OnMetadataWrite) and a copy older than
// metaRevalidate is read again, which bounds how long a write by another
// replica stays unseen. Each file carries a strong ETag (its SHA-256), so
// a client that has it gets 304 Not Modified.

const (
	// metaRevalidate bounds the age of the copy of a mutable metadata file
	// (timestamp.json, root.json): another replica's write is served here
	// at most this late.
	metaRevalidate = time.Second
	// maxCachedMeta and maxCachedMetaBytes bound the metadata kept in
	// memory (a catalogue of many targets makes large targets files); past
	// either, arbitrary versioned files make room.
	maxCachedMeta      = 16384
	maxCachedMetaBytes = 256 << 20
	// maxMetaBytes bounds one metadata file read into memory.
	maxMetaBytes = 256 << 20
)

type metaEntry struct {
	body   []byte
	etag   string
	mod    time.Time
	loaded time.Time // when the copy was read or written
}

type metaCache struct {
	blobs storage.Blobs
	now   func() time.Time
	sf    singleflight.Group

	maxFiles, maxBytes int

	mu    sync.RWMutex
	m     map[string]*metaEntry
	bytes int // total body bytes in m
}

func newMetaCache(blobs storage.Blobs, now func() time.Time) *metaCache {
	return &metaCache{blobs: blobs, now: now, m: map[string]*metaEntry{}, maxFiles: maxCachedMeta, maxBytes: maxCachedMetaBytes}
}

func mutableMeta(name string) bool { return name == "timestamp.json" || name == "root.json" }

func newMetaEntry(body []byte, mod, loaded time.Time) *metaEntry {
	sum := sha256.Sum256(body)
	return &metaEntry{body: body, etag: `"` + hex.EncodeToString(sum[:]) + `"`, mod: mod, loaded: loaded}
}

// written replaces the copy of name with what was just written.
func (c *metaCache) written(name string, data []byte) {
	now := c.now()
	c.store(name, newMetaEntry(bytes.Clone(data), now, now))
}

// store keeps e unless a newer copy is there already.
func (c *metaCache) store(name string, e *metaEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.m[name]
	if ok && old.loaded.After(e.loaded) {
		return
	}
	if ok {
		c.bytes -= len(old.body)
		delete(c.m, name)
	}
	for k, v := range c.m { // Go's map order is random: random victims
		if len(c.m) < c.maxFiles && c.bytes+len(e.body) <= c.maxBytes {
			break
		}
		if !mutableMeta(k) {
			c.bytes -= len(v.body)
			delete(c.m, k)
		}
	}
	c.m[name] = e
	c.bytes += len(e.body)
}

// get returns metadata file name from memory, or reads it from the blob
// store (one read for concurrent callers).
func (c *metaCache) get(ctx context.Context, name string) (*metaEntry, error) {
	c.mu.RLock()
	e, ok := c.m[name]
	c.mu.RUnlock()
	if ok && (!mutableMeta(name) || c.now().Sub(e.loaded) < metaRevalidate) {
		return e, nil
	}
	v, err, _ := c.sf.Do(name, func() (any, error) {
		started := c.now()
		obj, err := c.blobs.Open(context.WithoutCancel(ctx), "metadata/"+name)
		if err != nil {
			return nil, err
		}
		defer obj.Close()
		body, err := io.ReadAll(io.LimitReader(obj, maxMetaBytes+1))
		if err != nil {
			return nil, fmt.Errorf("read metadata %s: %w", name, err)
		}
		if len(body) > maxMetaBytes {
			return nil, fmt.Errorf("read metadata %s: larger than %d bytes", name, maxMetaBytes)
		}
		e := newMetaEntry(body, obj.Info().ModTime, started)
		c.store(name, e)
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*metaEntry), nil
}

// serveMeta answers GET and HEAD for metadata file name from memory, with
// its ETag (304 on a matching If-None-Match) and Range support.
func (s *Server) serveMeta(c echo.Context, name string) error {
	e, err := s.meta.get(c.Request().Context(), name)
	if err != nil {
		if errors.Is(err, tufota.ErrNotFound) {
			return tufota.Errorf(tufota.ENotFound, "no such file %q", name)
		}
		return err
	}
	h := c.Response().Header()
	h.Set("Content-Type", "application/json")
	h.Set("ETag", e.etag)
	if mutableMeta(name) {
		h.Set("Cache-Control", "no-cache")
	} else {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	http.ServeContent(c.Response(), c.Request(), name, e.mod, bytes.NewReader(e.body))
	return nil
}
