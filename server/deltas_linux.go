package server

import (
	"log/slog"
	"syscall"
)

// deltaNice is the nice level of the delta worker's thread.
const deltaNice = 10

// lowerPriority sets the calling thread's nice level to deltaNice (on
// Linux, priority is per thread); the caller has locked its goroutine to
// the thread.
func lowerPriority(log *slog.Logger) {
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), deltaNice); err != nil {
		log.Warn("delta worker runs at normal priority", slog.Any("err", err))
	}
}
