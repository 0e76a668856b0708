//go:build !linux

package server

import "log/slog"

// lowerPriority does nothing outside Linux: the worker is still one
// goroutine making one delta at a time.
func lowerPriority(*slog.Logger) {}
