// Package prommetrics exposes a ClientDriver's metrics as Prometheus series, with the names,
// help texts and buckets of the Python gateway's PrometheusClientMetrics
// (stateful_route/gateway/metrics.py; the shared list is conformance/metrics/client.json):
//
//	stateful_route_client_cache_hits_total    counter
//	stateful_route_client_cache_misses_total  counter
//	stateful_route_client_redis_seconds       histogram
//	stateful_route_client_change_lag_seconds  histogram
//	stateful_route_client_view_lag_seconds    histogram
//
// A separate package, so a gateway that passes no metrics does not link client_golang.
package prommetrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Buckets of stateful_route_client_redis_seconds, in seconds (the Python gateway's).
var Buckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0}

// LagBuckets are the buckets of the change channel's lag series, in seconds (the Python gateway's).
var LagBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0}

// Client implements statefulroute.ClientMetrics and LagMetrics; pass it as Options.Metrics.
type Client struct {
	hits, misses              prometheus.Counter
	redis, changeLag, viewLag prometheus.Histogram
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
		changeLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stateful_route_client_change_lag_seconds",
			Help:    "From a route change's publication to its routability applied here.",
			Buckets: LagBuckets,
		}),
		viewLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stateful_route_client_view_lag_seconds",
			Help:    "From a route change's publication to the re-read of the whole view covering it.",
			Buckets: LagBuckets,
		}),
	}
	for _, collector := range []prometheus.Collector{c.hits, c.misses, c.redis, c.changeLag, c.viewLag} {
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

// ChangeLag observes the time from a route change's publication to its routability applied here.
func (c *Client) ChangeLag(seconds float64) { c.changeLag.Observe(seconds) }

// ViewLag observes the time from a route change's publication to the re-read of its whole view.
func (c *Client) ViewLag(seconds float64) { c.viewLag.Observe(seconds) }
