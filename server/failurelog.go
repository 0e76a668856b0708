package server

import (
	"container/list"
	"net/netip"
	"time"
)

// failureLog remembers recent authentication failures per source, for the
// repeated-failure alert, in bounded memory: at most max sources (the one
// whose last failure is oldest is forgotten first), the last
// authFailureAlertThreshold failure times of each, and the last
// authFailureFloodThreshold failure times of all sources together. It is
// not safe for concurrent use; Alerter guards it.
type failureLog struct {
	max      int
	order    *list.List // of *failureSource, most recent failure first
	bySource map[string]*list.Element

	all          []time.Time // ring of the last failures from every source
	next         int
	floodAlerted time.Time
}

type failureSource struct {
	key     string
	times   []time.Time // the last failures, oldest first, at most the threshold
	alerted time.Time   // last alert for this source
}

func newFailureLog(max int) *failureLog {
	return &failureLog{max: max, order: list.New(), bySource: map[string]*list.Element{},
		all: make([]time.Time, 0, authFailureFloodThreshold)}
}

// add records a failure from key at now. It returns how many failures the
// source has within the window and whether that calls for an alert (the
// threshold reached, no alert for it within the window), and the same for
// failures from all sources together.
func (l *failureLog) add(key string, now time.Time) (n int, alertSource bool, total int, alertFlood bool) {
	el, ok := l.bySource[key]
	if ok {
		l.order.MoveToFront(el)
	} else {
		el = l.order.PushFront(&failureSource{key: key})
		l.bySource[key] = el
		for l.order.Len() > l.max {
			oldest := l.order.Back()
			l.order.Remove(oldest)
			delete(l.bySource, oldest.Value.(*failureSource).key)
		}
	}
	src := el.Value.(*failureSource)
	src.times = append(src.times, now)
	if len(src.times) > authFailureAlertThreshold {
		src.times = src.times[len(src.times)-authFailureAlertThreshold:]
	}
	n = within(src.times, now)
	if n >= authFailureAlertThreshold && (src.alerted.IsZero() || now.Sub(src.alerted) >= authFailureWindow) {
		src.alerted, alertSource = now, true
	}

	if len(l.all) < cap(l.all) {
		l.all = append(l.all, now)
	} else {
		l.all[l.next] = now
		l.next = (l.next + 1) % len(l.all)
	}
	total = within(l.all, now)
	if total >= authFailureFloodThreshold && (l.floodAlerted.IsZero() || now.Sub(l.floodAlerted) >= authFailureWindow) {
		l.floodAlerted, alertFlood = now, true
	}
	return n, alertSource, total, alertFlood
}

// len returns the number of sources remembered.
func (l *failureLog) len() int { return len(l.bySource) }

// within counts the times less than the window before now.
func within(times []time.Time, now time.Time) int {
	n := 0
	for _, t := range times {
		if now.Sub(t) < authFailureWindow {
			n++
		}
	}
	return n
}

// failureKey is what failures from source are counted against: the address
// itself, or for IPv6 its /64 (the usual smallest assignment, which one host
// can rotate through at will).
func failureKey(source string) string {
	a, err := netip.ParseAddr(source)
	if err != nil || !a.Is6() || a.Is4In6() {
		return source
	}
	p, err := a.Prefix(64)
	if err != nil {
		return source
	}
	return p.String()
}
