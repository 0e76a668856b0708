package signer

import "sync"

// watchers are the functions told of metadata writes.
type watchers struct {
	mu sync.RWMutex
	fs []func(file string, data []byte)
}

func (w *watchers) notify(file string, data []byte) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	for _, f := range w.fs {
		f(file, data)
	}
}

// OnMetadataWrite registers f to be called, on the writer's goroutine,
// after every metadata file this Repository writes (e.g. "timestamp.json",
// "3.targets.json") with the bytes written; f must not modify data and must
// not block. The server uses it to keep its in-memory copy of the
// repository's metadata current; writes by other replicas are not seen.
func (r *Repository) OnMetadataWrite(f func(file string, data []byte)) {
	r.writes.mu.Lock()
	defer r.writes.mu.Unlock()
	r.writes.fs = append(r.writes.fs, f)
}
