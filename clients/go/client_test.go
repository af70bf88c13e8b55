package statefulroute

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestTypedErrorsMatchTheirSentinels(t *testing.T) {
	pending := error(&PodPendingError{Namespace: "ns", Service: "svc", WaitAtMost: 1500 * time.Millisecond})
	if !errors.Is(pending, ErrPodPending) || !errors.Is(pending, ErrNoAvailablePod) || errors.Is(pending, ErrStore) {
		t.Errorf("PodPendingError: %v", pending)
	}
	wrapped := fmt.Errorf("gateway: %w", &NoAvailablePodError{Namespace: "ns", Service: "svc", Pod: 0, HasPod: true})
	var none *NoAvailablePodError
	if !errors.Is(wrapped, ErrNoAvailablePod) || errors.Is(wrapped, ErrPodPending) || !errors.As(wrapped, &none) ||
		none.Pod != 0 || !strings.Contains(wrapped.Error(), "pod 0 is not a routable pod of service ns/svc") {
		t.Errorf("NoAvailablePodError: %v", wrapped)
	}
	down := error(&StoreError{Op: "place", Unavailable: true, Err: errors.New("dial redis://:Sekr@h:1/0: refused")})
	if !errors.Is(down, ErrStoreUnavailable) || !errors.Is(down, ErrStore) || strings.Contains(down.Error(), "Sekr") {
		t.Errorf("unavailable: %v", down)
	}
	if bad := error(&StoreError{Op: "read"}); errors.Is(bad, ErrStoreUnavailable) || !errors.Is(bad, ErrStore) {
		t.Errorf("store error: %v", bad)
	}
	if in := invalid("uid", "x"); !errors.Is(in, ErrInvalidInput) || in.Error() != "uid: x" {
		t.Errorf("invalid input: %v", in)
	}
}

func TestOptionsAreChecked(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	for field, opts := range map[string]Options{
		"namespace": {},
		"prefix":    {Namespaces: []string{"a"}, Prefix: "a{b}"},
		"cache_ttl": {Namespaces: []string{"a"}, LinkTTL: 10 * time.Second, CacheTTL: 20 * time.Second},
		"max_age":   {Namespaces: []string{"a"}, MaxAge: 2 * time.Second},
		"link_ttl":  {Namespaces: []string{"a"}, LinkTTL: time.Millisecond},
	} {
		var bad *InvalidInputError
		if _, err := NewClientDriver(rdb, opts); !errors.As(err, &bad) || bad.Field != field {
			t.Errorf("%s: got %v", field, err)
		}
	}
	if _, err := NewClientDriver(rdb, Options{Namespaces: []string{"Games"}}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("a namespace that is not a DNS label: %v", err)
	}
}

// A Redis that does not answer is ErrStoreUnavailable within the timeout, never an answer;
// the caller's cancellation is returned as such.
func TestFaultsAreTyped(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close() // accepts nothing: every call hangs until its deadline
	rdb := redis.NewClient(&redis.Options{Addr: listener.Addr().String(), MaxRetries: -1})
	defer rdb.Close()
	d, err := NewClientDriver(rdb, Options{Namespaces: []string{"games"}, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	start := time.Now()
	_, err = d.ComputeLinkedPod(context.Background(), "games", "u1", "room")
	if !errors.Is(err, ErrStoreUnavailable) || time.Since(start) > 2*time.Second {
		t.Errorf("a hung Redis: %v after %v", err, time.Since(start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = d.GetLinkedPod(ctx, "games", "u1", "room")
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("a cancelled call: %v", err)
	}
	if _, err := d.ComputeLinkedPod(ctx, "games", "", "room"); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("bad input comes first: %v", err)
	}
}

func TestTheCacheIsBoundedAndNeverOutlivesTheLink(t *testing.T) {
	now := time.Now()
	c := newLinkCache(2, time.Minute)
	for i, uid := range []string{"a", "b", "c"} {
		c.put(cacheKey{"ns", "svc", uid}, i, -1, now, now)
	}
	if _, ok := c.get(cacheKey{"ns", "svc", "a"}, now); ok || len(c.entries) != 2 {
		t.Errorf("the oldest entry stays: %d entries", len(c.entries))
	}
	// The link had 100 ms left when read; the request was sent 60 ms ago: 40 ms remain.
	c.put(cacheKey{"ns", "svc", "d"}, 7, 100*time.Millisecond, now.Add(-60*time.Millisecond), now)
	if pod, ok := c.get(cacheKey{"ns", "svc", "d"}, now.Add(39*time.Millisecond)); !ok || pod != 7 {
		t.Error("the entry is gone early")
	}
	if _, ok := c.get(cacheKey{"ns", "svc", "d"}, now.Add(41*time.Millisecond)); ok {
		t.Error("the entry outlives the link")
	}
	if _, ok := c.get(cacheKey{"ns", "a:b", "c"}, now); ok {
		t.Error("keys collide")
	}
}

// Concurrent gateways' goroutines on one driver (run with -race): a burst of new users spreads
// over the pods and every answer agrees with Redis.
func TestConcurrentPlacementsSpreadAndAgree(t *testing.T) {
	rdb, prefix := testRedis(t)
	t.Cleanup(func() { deletePrefix(rdb, prefix) })
	k := newRouteKeys(prefix, "games", "room")
	writeTable(t, rdb, k, step{Pods: []podSpec{{Index: 0}, {Index: 1}, {Index: 2}, {Index: 3}}})
	d, err := NewClientDriver(rdb, Options{Namespaces: []string{"games"}, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	const users = 400
	answers := make([]int, users)
	errs := make(chan error, 8)
	for w := range 8 {
		go func() {
			for i := w; i < users; i += 8 {
				pod, err := d.ComputeLinkedPod(ctx, "games", fmt.Sprintf("user-%d", i), "room")
				if err != nil {
					errs <- err
					return
				}
				answers[i] = pod
				if again, err := d.ComputeLinkedPod(ctx, "games", fmt.Sprintf("user-%d", i), "room"); err != nil || again != pod {
					errs <- fmt.Errorf("user-%d: %d then %d (%v)", i, pod, again, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	uids := make([]string, users)
	for i := range uids {
		uids[i] = fmt.Sprintf("user-%d", i)
	}
	grouped, err := d.BatchGetLinkedPod(ctx, "games", uids, "room")
	if err != nil {
		t.Fatal(err)
	}
	for pod, members := range grouped {
		if len(members) != users/4 {
			t.Errorf("pod %d holds %d users, want %d", pod, len(members), users/4)
		}
		for _, uid := range members {
			var i int
			fmt.Sscanf(uid, "user-%d", &i)
			if answers[i] != pod {
				t.Errorf("%s answered %d, stored %d", uid, answers[i], pod)
			}
		}
	}
	if pods, err := d.RoutablePods(ctx, "games", "room"); err != nil || fmt.Sprint(pods) != "[0 1 2 3]" {
		t.Errorf("routable pods %v %v", pods, err)
	}
	if ok, err := d.IsPodAvailable(ctx, "games", "room", 2); err != nil || !ok {
		t.Errorf("pod 2 available: %v %v", ok, err)
	}
}

// countingMetrics is a ClientMetrics that counts.
type countingMetrics struct {
	mu                  sync.Mutex
	hits, misses, calls int
}

func (m *countingMetrics) CacheHit()         { m.mu.Lock(); m.hits++; m.mu.Unlock() }
func (m *countingMetrics) CacheMiss()        { m.mu.Lock(); m.misses++; m.mu.Unlock() }
func (m *countingMetrics) RedisCall(float64) { m.mu.Lock(); m.calls++; m.mu.Unlock() }

func TestMetricsCountHitsMissesAndRoundTrips(t *testing.T) {
	rdb, prefix := testRedis(t)
	k := newRouteKeys(prefix, "games", "room")
	writeTable(t, rdb, k, step{Pods: []podSpec{{Index: 0}, {Index: 1}}})
	t.Cleanup(func() { deletePrefix(rdb, prefix) })
	m := &countingMetrics{}
	d, err := NewClientDriver(rdb, Options{Namespaces: []string{"games"}, Prefix: prefix, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	for range 3 {
		if _, err := d.ComputeLinkedPod(ctx, "games", "u1", "room"); err != nil {
			t.Fatal(err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hits != 2 || m.misses != 1 || m.calls < 1 {
		t.Fatalf("hits %d, misses %d, round trips %d; want 2, 1, at least 1", m.hits, m.misses, m.calls)
	}
}
