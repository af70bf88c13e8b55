package statefulroute

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Benchmarks for BENCHMARKS.md (`make go-bench`), against the private redis-server of TestMain.
// Each figure is measured next to its reference in the same run: a go-redis no-op EVALSHA and
// MGET (the physical limit), and the original Go driver's design (a cache keyed by a joined
// string, placement by a plain SET).

const benchPods = 8

// benchRoute writes a route of benchPods Ready pods and returns its keys.
func benchRoute(b *testing.B, rdb *redis.Client, prefix string) routeKeys {
	b.Helper()
	k := newRouteKeys(prefix, "bench", "room")
	s := step{}
	for i := range benchPods {
		s.Pods = append(s.Pods, podSpec{Index: i})
	}
	writeTable(b, rdb, k, s)
	b.Cleanup(func() { deletePrefix(rdb, prefix) })
	return k
}

func benchRedis(b *testing.B) (*redis.Client, string) {
	b.Helper()
	if testRedisAddr == "" {
		b.Skip("redis-server is not on PATH")
	}
	rdb := redis.NewClient(&redis.Options{Addr: testRedisAddr, PoolSize: 32})
	b.Cleanup(func() { rdb.Close() })
	return rdb, fmt.Sprintf("srbench%d", prefixes.Add(1))
}

func benchDriver(b *testing.B, rdb *redis.Client, prefix string) *ClientDriver {
	b.Helper()
	d, err := NewClientDriver(rdb, Options{Namespaces: []string{"bench"}, Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	return d
}

// BenchmarkCacheHit: ComputeLinkedPod answered from the cache (a fresh route view, the pod
// routable). Goal ≤ 100 ns/op and no allocation.
func BenchmarkCacheHit(b *testing.B) {
	rdb, prefix := benchRedis(b)
	benchRoute(b, rdb, prefix)
	d := benchDriver(b, rdb, prefix)
	ctx := context.Background()
	if _, err := d.ComputeLinkedPod(ctx, "bench", "user-1", "room"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := d.ComputeLinkedPod(ctx, "bench", "user-1", "room"); err != nil {
			b.Fatal(err)
		}
	}
}

// originalCache is the original driver's cache: a TTL map under a mutex keyed by the fields
// joined with ':' (so ("a:b", "c") and ("a", "b:c") collide), built on every lookup.
type originalCache struct {
	mu      sync.Mutex
	entries map[string]originalEntry
}

type originalEntry struct {
	pod      int
	deadline time.Time
}

func (c *originalCache) get(namespace, uid, service string) (int, bool) {
	key := namespace + ":" + uid + ":" + service
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !e.deadline.After(time.Now()) {
		return 0, false
	}
	return e.pod, true
}

// BenchmarkOriginalCacheHit: the original design's cache hit (no view, no routability check).
func BenchmarkOriginalCacheHit(b *testing.B) {
	c := &originalCache{entries: map[string]originalEntry{}}
	c.entries["bench:user-1:room"] = originalEntry{pod: 3, deadline: time.Now().Add(time.Hour)}
	namespace, uid, service := "bench", "user-1", "room"
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.get(namespace, uid, service); !ok {
			b.Fatal("miss")
		}
	}
}

// parallel runs op from clients goroutines (GOMAXPROCS × parallelism), each with its own
// number (0 ≤ worker < clients), and reports users/s.
func parallel(b *testing.B, clients int, op func(worker int, n int64)) {
	var workers, seq atomic.Int64
	b.SetParallelism(max(1, clients/runtime.GOMAXPROCS(0)))
	started := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		worker := int(workers.Add(1)-1) % clients
		for pb.Next() {
			op(worker, seq.Add(1))
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(started).Seconds(), "users/s")
}

// placement benchmarks: every op a new user, from 1 or 16 clients (each its own driver and
// connection pool), against the no-op EVALSHA and the original design's plain SET.
func BenchmarkPlacement(b *testing.B) {
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("ours/clients=%d", clients), func(b *testing.B) {
			rdb, prefix := benchRedis(b)
			benchRoute(b, rdb, prefix)
			drivers := make([]*ClientDriver, clients)
			for i := range drivers {
				own := redis.NewClient(&redis.Options{Addr: testRedisAddr})
				b.Cleanup(func() { own.Close() })
				drivers[i] = benchDriver(b, own, prefix)
			}
			ctx := context.Background()
			b.ResetTimer()
			parallel(b, clients, func(worker int, n int64) {
				if _, err := drivers[worker].ComputeLinkedPod(ctx, "bench", "u"+strconv.FormatInt(n, 10), "room"); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run(fmt.Sprintf("noop-evalsha/clients=%d", clients), func(b *testing.B) {
			conns := benchConns(b, clients)
			noop := redis.NewScript("return 1")
			ctx := context.Background()
			if err := noop.Load(ctx, conns[0]).Err(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			parallel(b, clients, func(worker int, n int64) {
				if err := noop.EvalSha(ctx, conns[worker], []string{"k"}).Err(); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run(fmt.Sprintf("original-set/clients=%d", clients), func(b *testing.B) {
			conns := benchConns(b, clients)
			_, prefix := benchRedis(b)
			ctx := context.Background()
			b.Cleanup(func() { deletePrefix(conns[0], prefix) })
			b.ResetTimer()
			parallel(b, clients, func(worker int, n int64) {
				key := prefix + ":bench:" + "u" + strconv.FormatInt(n, 10) + ":room"
				if err := conns[worker].Set(ctx, key, int(n%benchPods), DefaultLinkTTL).Err(); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

func benchConns(b *testing.B, n int) []*redis.Client {
	b.Helper()
	if testRedisAddr == "" {
		b.Skip("redis-server is not on PATH")
	}
	conns := make([]*redis.Client, n)
	for i := range conns {
		conns[i] = redis.NewClient(&redis.Options{Addr: testRedisAddr})
		b.Cleanup(func() { conns[i].Close() })
	}
	return conns
}

// BenchmarkBatch10000: BatchGetLinkedPod of 10,000 linked users against pipelined MGETs of the
// same keys (1,000 per command, as the driver sends them).
func BenchmarkBatch10000(b *testing.B) {
	rdb, prefix := benchRedis(b)
	k := benchRoute(b, rdb, prefix)
	ctx := context.Background()
	uids := make([]string, 10_000)
	keys := make([]string, len(uids))
	pipe := rdb.Pipeline()
	for i := range uids {
		uids[i] = "user-" + strconv.Itoa(i)
		keys[i] = k.link(uids[i])
		pipe.Set(ctx, keys[i], strconv.Itoa(i%benchPods), time.Hour)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	d := benchDriver(b, rdb, prefix)
	b.Run("ours", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			grouped, err := d.BatchGetLinkedPod(ctx, "bench", uids, "room")
			if err != nil || len(grouped) != benchPods {
				b.Fatal(err, len(grouped))
			}
		}
		b.ReportMetric(float64(len(uids))*float64(b.N)/b.Elapsed().Seconds(), "users/s")
	})
	b.Run("mget", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			pipe := rdb.Pipeline()
			for start := 0; start < len(keys); start += batchSize {
				pipe.MGet(ctx, keys[start:start+batchSize]...)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(uids))*float64(b.N)/b.Elapsed().Seconds(), "users/s")
	})
}
