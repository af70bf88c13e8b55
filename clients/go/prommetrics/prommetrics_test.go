package prommetrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type metric struct {
	Name    string    `json:"name"`
	Type    string    `json:"type"`
	Help    string    `json:"help"`
	Buckets []float64 `json:"buckets"`
}

// TestSeriesAreThePythonGatewaysOnes compares what this package exposes with
// conformance/metrics/client.json, which tests/unit/test_metric_names.py compares with the Python
// gateway's PrometheusClientMetrics.
func TestSeriesAreThePythonGatewaysOnes(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "conformance", "metrics", "client.json"))
	if err != nil {
		t.Fatal(err)
	}
	var shared struct{ Metrics []metric }
	if err := json.Unmarshal(raw, &shared); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	c.CacheHit()
	c.CacheMiss()
	c.RedisCall(0.002)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []metric
	for _, f := range families {
		m := metric{Name: f.GetName(), Type: strings.ToLower(f.GetType().String()), Help: f.GetHelp()}
		for _, sample := range f.GetMetric() {
			if h := sample.GetHistogram(); h != nil {
				for _, b := range h.GetBucket() {
					m.Buckets = append(m.Buckets, b.GetUpperBound())
				}
			}
		}
		got = append(got, m)
	}
	// Prometheus gathers families sorted by name; the shared list keeps the Python gateway's order.
	want := slices.Clone(shared.Metrics)
	slices.SortFunc(want, func(a, b metric) int { return strings.Compare(a.Name, b.Name) })
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("exposed %+v\nshared list %+v", got, shared.Metrics)
	}
	if _, err := New(reg); err == nil {
		t.Fatal("registering twice on one registry succeeded")
	}
}
