// Package prommetrics exposes a ClientDriver's metrics as Prometheus series, with the names,
// help texts and buckets of the Python gateway's PrometheusClientMetrics
// (stateful_route/gateway/metrics.py; the shared list is conformance/metrics/client.json):
//
//	stateful_route_client_cache_hits_total    counter
//	stateful_route_client_cache_misses_total  counter
//	stateful_route_client_redis_seconds       histogram
//
// A separate package, so a gateway that passes no metrics does not link client_golang.
package prommetrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Buckets of stateful_route_client_redis_seconds, in seconds (the Python gateway's).
var Buckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0}

// Client implements statefulroute.ClientMetrics; pass it as Options.Metrics.
type Client struct {
	hits, misses prometheus.Counter
	redis        prometheus.Histogram
}

// New registers the series on reg (prometheus.DefaultRegisterer when nil) and returns them.
// Registering twice on one registry fails (prometheus.AlreadyRegisteredError).
func New(reg prometheus.Registerer) (*Client, error) {
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	c := &Client{
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stateful_route_client_cache_hits_total", Help: "Lookups answered from the local cache.",
		}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stateful_route_client_cache_misses_total", Help: "Lookups that asked Redis.",
		}),
		redis: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "stateful_route_client_redis_seconds", Help: "Link-store round trips to Redis.", Buckets: Buckets,
		}),
	}
	for _, collector := range []prometheus.Collector{c.hits, c.misses, c.redis} {
		if err := reg.Register(collector); err != nil {
			return nil, fmt.Errorf("prommetrics: %w", err)
		}
	}
	return c, nil
}

// CacheHit counts a lookup answered from the local cache.
func (c *Client) CacheHit() { c.hits.Inc() }

// CacheMiss counts a lookup that asked Redis.
func (c *Client) CacheMiss() { c.misses.Inc() }

// RedisCall observes one link-store round trip.
func (c *Client) RedisCall(seconds float64) { c.redis.Observe(seconds) }
