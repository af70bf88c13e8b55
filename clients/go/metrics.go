package statefulroute

import (
	"context"
	"time"
)

// ClientMetrics is what a ClientDriver reports when given one (Options.Metrics), as Python's
// gateway/metrics.py ClientMetrics. Nil (the default) costs nothing. prommetrics.Client
// implements it with the Python gateway's Prometheus series.
type ClientMetrics interface {
	// CacheHit: ComputeLinkedPod answered from the local cache.
	CacheHit()
	// CacheMiss: ComputeLinkedPod had to ask Redis.
	CacheMiss()
	// RedisCall: one link-store round trip to Redis took seconds (faults included).
	RedisCall(seconds float64)
}

// LagMetrics is what a ClientMetrics may also implement to measure the change channel: from a route
// change's publication (Redis clock) to its routability applied here (ChangeLag), and to the re-read
// of the whole view covering it (ViewLag), in seconds, as the Python gateway's change_lag/view_lag.
type LagMetrics interface {
	ChangeLag(seconds float64)
	ViewLag(seconds float64)
}

// observed is within, reporting how long the call took to m (when not nil).
func observed[T any](m ClientMetrics, ctx context.Context, d time.Duration, op string, call func(context.Context) (T, error)) (T, error) {
	if m == nil {
		return within(ctx, d, op, call)
	}
	started := time.Now()
	defer func() { m.RedisCall(time.Since(started).Seconds()) }()
	return within(ctx, d, op, call)
}
