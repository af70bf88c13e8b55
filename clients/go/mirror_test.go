package statefulroute

import (
	"context"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestChangeMessagesAreParsedAsPythonDoes(t *testing.T) {
	for raw, want := range map[string]*change{
		"t|room|0,2|1700000000123|7": {kind: changeTable, service: "room", routable: map[int]bool{0: true, 2: true}, version: 7, hasVersion: true, at: time.UnixMilli(1700000000123)},
		"t|room||1700000000123|8":    {kind: changeTable, service: "room", routable: map[int]bool{}, version: 8, hasVersion: true, at: time.UnixMilli(1700000000123)},
		"t|room":                     {kind: changeTable, service: "room"},
		"t|room|x|1|2":               {kind: changeTable, service: "room"},
		"t|room|1|abc|2":             {kind: changeTable, service: "room"},
		"u|room|user:1|x":            {kind: changeUnlinked, service: "room", subject: "user:1|x"},
		"e|room|3":                   {kind: changeEvicted, service: "room", subject: "3"},
		"z|room|3":                   nil,
		"t|":                         nil,
		"":                           nil,
	} {
		got, ok := parseChange(raw)
		if (want == nil) != !ok || (want != nil && !reflect.DeepEqual(got, *want)) {
			t.Errorf("%q: got %+v %v, want %+v", raw, got, ok, want)
		}
	}
}

// eventually polls cond every 5 ms until it holds or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func mirrorRoute(t *testing.T, opts Options, pods ...int) (*redis.Client, *ClientDriver, routeKeys) {
	t.Helper()
	rdb, prefix := testRedis(t)
	t.Cleanup(func() { deletePrefix(rdb, prefix) })
	k := newRouteKeys(prefix, "games", "room")
	writeTable(t, rdb, k, step{Pods: podSpecs(pods...)})
	opts.Namespaces, opts.Prefix = []string{"games"}, prefix
	d, err := NewClientDriver(rdb, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.Subscribed(context.Background()); err != nil {
		t.Fatal(err)
	}
	return rdb, d, k
}

func podSpecs(pods ...int) []podSpec {
	out := make([]podSpec, len(pods))
	for i, p := range pods {
		out[i] = podSpec{Index: p}
	}
	return out
}

func notReady(spec []podSpec, pod int) []podSpec {
	for i := range spec {
		if spec[i].Index == pod {
			no := false
			spec[i].Ready = &no
		}
	}
	return spec
}

// A pod that stops being routable stops being answered as soon as the message arrives (well
// under the 1 s bound), the links cached to it are dropped, and the user moves.
func TestAChangeMessageStopsAnswersAtOnce(t *testing.T) {
	rdb, d, k := mirrorRoute(t, Options{}, 0, 1)
	ctx := context.Background()
	pod, err := d.ComputeLinkedPod(ctx, "games", "u1", "room")
	if err != nil {
		t.Fatal(err)
	}
	if cached, ok, _ := d.GetLinkedInCache(ctx, "games", "u1", "room"); !ok || cached != pod {
		t.Fatalf("not cached: %d %v", cached, ok)
	}
	reads := d.mirror.readsCount()
	writeTable(t, rdb, k, step{Pods: notReady(podSpecs(0, 1), pod)})
	took := eventually(t, 200*time.Millisecond, "the cached link is dropped", func() bool {
		_, ok, _ := d.GetLinkedInCache(ctx, "games", "u1", "room")
		return !ok
	})
	t.Logf("dropped after %v", took)
	if routable, err := d.IsPodRoutable(ctx, "games", "room", pod); err != nil || routable {
		t.Errorf("pod %d still routable: %v", pod, err)
	}
	moved, err := d.ComputeLinkedPod(ctx, "games", "u1", "room")
	if err != nil || moved == pod {
		t.Errorf("the user stayed on %d (%d, %v)", pod, moved, err)
	}
	eventually(t, 200*time.Millisecond, "the route is re-read after the message", func() bool {
		return d.mirror.readsCount() > reads
	})
}

// A lost message (the change announced on another channel) is caught by the periodic re-read:
// no answer names the pod past the 1 s bound.
func TestALostMessageIsCaughtWithinTheBound(t *testing.T) {
	rdb, d, k := mirrorRoute(t, Options{}, 0, 1)
	ctx := context.Background()
	pod, err := d.ComputeLinkedPod(ctx, "games", "u1", "room")
	if err != nil {
		t.Fatal(err)
	}
	writeTableOn(t, rdb, k, step{Pods: notReady(podSpecs(0, 1), pod)}, "elsewhere")
	took := eventually(t, time.Second, "an answer naming the unroutable pod", func() bool {
		got, err := d.ComputeLinkedPod(ctx, "games", "u1", "room")
		return err == nil && got != pod
	})
	t.Logf("moved after %v", took)
}

// unlinked (u) and evicted (e) messages drop cached links.
func TestUnlinkedAndEvictedMessagesDropCachedLinks(t *testing.T) {
	rdb, d, k := mirrorRoute(t, Options{}, 0, 1)
	ctx := context.Background()
	for _, uid := range []string{"a", "b"} {
		if err := d.SetCache(ctx, "games", uid, "room", 1); err != nil {
			t.Fatal(err)
		}
	}
	rdb.Publish(ctx, k.channel, unlinkedMessage("room", "a"))
	eventually(t, 200*time.Millisecond, "u drops a", func() bool {
		_, ok, _ := d.GetLinkedInCache(ctx, "games", "a", "room")
		return !ok
	})
	if _, ok, _ := d.GetLinkedInCache(ctx, "games", "b", "room"); !ok {
		t.Fatal("b dropped too")
	}
	rdb.Publish(ctx, k.channel, "e|room|1")
	eventually(t, 200*time.Millisecond, "e drops b", func() bool {
		_, ok, _ := d.GetLinkedInCache(ctx, "games", "b", "room")
		return !ok
	})
}

// A flood of messages about one route costs far fewer reads than messages: they coalesce.
func TestSupersededMessagesCoalesce(t *testing.T) {
	rdb, d, k := mirrorRoute(t, Options{RefreshInterval: 900 * time.Millisecond}, 0, 1, 2)
	ctx := context.Background()
	if _, err := d.RoutablePods(ctx, "games", "room"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	reads := d.mirror.readsCount()
	pipe := rdb.Pipeline()
	const messages = 200
	for i := range messages {
		pipe.Publish(ctx, k.channel, "t|room|0,1|1|"+strconv.Itoa(1000+i))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if n := d.mirror.readsCount() - reads; n < 1 || n > messages/4 {
		t.Errorf("%d reads for %d messages", n, messages)
	}
	// The messages claimed versions up to 1199 with pods 0 and 1; the re-read that began after
	// them found the real, older version: Redis's truth (as after a data loss), so the view
	// holds the real routability again.
	got, err := d.RoutablePods(ctx, "games", "room")
	if err != nil || !reflect.DeepEqual(got, []int{0, 1, 2}) {
		t.Errorf("routable %v %v", got, err)
	}
}

// Only routes with a table are followed; a deleted route is forgotten; idle routes are forgotten
// after keep; beyond MaxRoutes the least recently asked about goes, with its cached links.
func TestOnlyExistingAskedAboutRoutesAreFollowed(t *testing.T) {
	rdb, d, k := mirrorRoute(t, Options{MaxRoutes: 2}, 0, 1)
	ctx := context.Background()
	if _, err := d.RoutablePods(ctx, "games", "nothing"); err != nil {
		t.Fatal(err)
	}
	if d.mirror.following("games", "nothing") {
		t.Error("a route without a table is followed")
	}
	if _, err := d.RoutablePods(ctx, "games", "room"); err != nil || !d.mirror.following("games", "room") {
		t.Fatalf("the route is not followed: %v", err)
	}
	prefix := strings.TrimSuffix(k.base, ":{games/room}:")
	other, third := newRouteKeys(prefix, "games", "hall"), newRouteKeys(prefix, "games", "lobby")
	writeTable(t, rdb, other, step{Pods: podSpecs(0)})
	writeTable(t, rdb, third, step{Pods: podSpecs(0)})
	if err := d.SetCache(ctx, "games", "u1", "room", 1); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"hall", "lobby"} {
		if _, err := d.RoutablePods(ctx, "games", svc); err != nil {
			t.Fatal(err)
		}
	}
	if d.mirror.following("games", "room") || !d.mirror.following("games", "lobby") {
		t.Errorf("beyond MaxRoutes the least recently asked about is not the one forgotten: %v", d.mirror.followed)
	}
	if _, ok, _ := d.GetLinkedInCache(ctx, "games", "u1", "room"); ok {
		t.Error("a link cached to a forgotten route stays")
	}
	// Deleted: the next read forgets it.
	if err := scriptWriteTable.Run(ctx, rdb, []string{third.pods, third.reports, third.config, third.version, third.available, third.instances},
		"delete", third.channel, tableChangedPrefix("lobby"), third.podLinks, "").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "the deleted route is forgotten", func() bool { return !d.mirror.following("games", "lobby") })
	// Idle.
	d.mirror.mu.Lock()
	d.mirror.forgetIdle(time.Now().Add(d.mirror.keep))
	d.mirror.mu.Unlock()
	if d.mirror.following("games", "hall") {
		t.Error("an idle route is followed")
	}
}

// A re-read that finds the version gone back (Redis lost its data) wins and forgets the cache.
func TestDataLossForgetsTheCache(t *testing.T) {
	rdb, d, k := mirrorRoute(t, Options{}, 0, 1)
	ctx := context.Background()
	if _, err := d.ComputeLinkedPod(ctx, "games", "u1", "room"); err != nil {
		t.Fatal(err)
	}
	rdb.Set(ctx, k.version, 0, 0)
	eventually(t, time.Second, "the cache is forgotten", func() bool {
		_, ok, _ := d.GetLinkedInCache(ctx, "games", "u1", "room")
		return !ok
	})
}

// GetLinkedPodInCacheOrIfPersist caches what it read only when it answers it: a temporary link
// stays out of the cache, a persistent one goes in (as the Python client does; a seeded cluster
// replay found the two caches apart).
func TestInCacheOrIfPersistCachesOnlyAPersistentLink(t *testing.T) {
	rdb, d, k := mirrorRoute(t, Options{}, 0, 1)
	ctx := context.Background()
	if _, err := d.ComputeLinkedPod(ctx, "games", "temp", "room"); err != nil {
		t.Fatal(err)
	}
	// A pod's own SetLinkedPod writes this persistent form ("1p": pod 1, persistent).
	if err := rdb.Set(ctx, k.links+"kept", "1p", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, uid := range []string{"temp", "kept"} {
		if err := d.CacheExpired(ctx, "games", uid, "room"); err != nil {
			t.Fatal(err)
		}
		_, found, err := d.GetLinkedPodInCacheOrIfPersist(ctx, "games", uid, "room")
		_, cached, _ := d.GetLinkedInCache(ctx, "games", uid, "room")
		if err != nil || found != (uid == "kept") || cached != found {
			t.Fatalf("%s: found %v, cached %v, %v", uid, found, cached, err)
		}
	}
}
