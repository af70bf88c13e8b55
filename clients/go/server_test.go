package statefulroute

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The ServerDriver, as tests/store/test_hand_off.py and test_hand_off_deadline.py check the
// Python one.

// podRoute writes a table of n Ready pods of (ns "pods", service "room") and returns its keys.
func podRoute(t *testing.T, rdb *redis.Client, prefix string, n int, loads ...int) routeKeys {
	t.Helper()
	k := newRouteKeys(prefix, "pods", "room")
	s := step{}
	for i := range n {
		p := podSpec{Index: i}
		if i < len(loads) {
			p.Load = loads[i]
		}
		s.Pods = append(s.Pods, p)
	}
	writeTable(t, rdb, k, s)
	t.Cleanup(func() { deletePrefix(rdb, prefix) })
	return k
}

func pods(t *testing.T, rdb *redis.Client, prefix string, n int) []*ServerDriver {
	t.Helper()
	out := make([]*ServerDriver, n)
	for i := range out {
		out[i] = serverDriver(t, rdb, prefix, "pods", "room", i)
	}
	return out
}

// snapshotOf is the route's snapshot (the SNAPSHOT script).
func snapshotOf(t *testing.T, rdb *redis.Client, k routeKeys) *routeView {
	t.Helper()
	views, errs := readSnapshots(context.Background(), rdb, []routeKeys{k})
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	return views[0]
}

func linkOf(t *testing.T, rdb *redis.Client, k routeKeys, uid string) (string, time.Duration) {
	t.Helper()
	ctx := context.Background()
	value, err := rdb.Get(ctx, k.link(uid)).Result()
	if err == redis.Nil {
		return "", 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return value, rdb.PTTL(ctx, k.link(uid)).Val()
}

func TestServerReportsMoveTheBestPodAndAnnounceRoutingChanges(t *testing.T) {
	rdb, prefix := testRedis(t)
	ctx := context.Background()
	k := podRoute(t, rdb, prefix, 3)
	p := pods(t, rdb, prefix, 3)
	sub := rdb.Subscribe(ctx, k.channel)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p[0].SetLoadState(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if err := p[1].SetLoadState(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if best := snapshotOf(t, rdb, k).best; best != 2 {
		t.Fatalf("best %d, want 2 (the unloaded pod)", best)
	}
	if err := p[2].SetRoutingState(ctx, RoutingDenyNewCall); err != nil {
		t.Fatal(err)
	}
	view := snapshotOf(t, rdb, k)
	if view.best != 1 || view.available[2] || !view.routable[2] {
		t.Fatalf("after drain: best %d, available %v, routable %v", view.best, view.available, view.routable)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil || msg.Payload[:len("t|room|")] != "t|room|" {
		t.Fatalf("no table message for a routing change: %v %v", msg, err)
	}
	if err := p[2].SetRoutingState(ctx, RoutingShutdown); err != nil {
		t.Fatal(err)
	}
	if snapshotOf(t, rdb, k).routable[2] {
		t.Fatal("a shut-down pod is routable")
	}
	// Bad input writes nothing; a route without a table is refused.
	if err := p[0].SetLoadState(ctx, -1); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("load -1: %v", err)
	}
	if err := p[0].SetRoutingState(ctx, RoutingState(7)); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("state 7: %v", err)
	}
	ghost := serverDriver(t, rdb, prefix, "pods", "ghost", 0)
	if err := ghost.SetLoadState(ctx, 1); !errors.Is(err, ErrNoAvailablePod) {
		t.Fatalf("report into a route without a table: %v", err)
	}
	if _, _, err := ghost.SetLinkedPod(ctx, "u"); !errors.Is(err, ErrNoAvailablePod) {
		t.Fatalf("persist into a route without a table: %v", err)
	}
	if n := rdb.Exists(ctx, newRouteKeys(prefix, "pods", "ghost").link("u")).Val(); n != 0 {
		t.Fatal("a refused persist wrote a link")
	}
	if _, err := NewServerDriver(rdb, "pods", "Bad_Name", 0, ServerOptions{}); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("bad service: %v", err)
	}
	if _, err := NewServerDriver(rdb, "pods", "room", -1, ServerOptions{}); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("bad pod: %v", err)
	}
}

func TestServerPersistsTriesAndRemovesLinks(t *testing.T) {
	rdb, prefix := testRedis(t)
	ctx := context.Background()
	k := podRoute(t, rdb, prefix, 3)
	p := pods(t, rdb, prefix, 3)
	if _, found, err := p[0].SetLinkedPod(ctx, "a"); err != nil || found {
		t.Fatalf("first persist: found %v, %v", found, err)
	}
	if v, ttl := linkOf(t, rdb, k, "a"); v != "0p" || ttl != -1 {
		t.Fatalf("link %q ttl %v, want 0p without TTL", v, ttl)
	}
	if stored, holder, err := p[1].TrySetLinkedPod(ctx, "a"); err != nil || stored || holder != 0 {
		t.Fatalf("try on a held user: %v %d %v", stored, holder, err)
	}
	if prev, found, err := p[1].SetLinkedPod(ctx, "a"); err != nil || !found || prev != 0 {
		t.Fatalf("forced persist: previous %d %v %v", prev, found, err)
	}
	if stored, holder, err := p[2].TrySetLinkedPod(ctx, "b"); err != nil || !stored || holder != 2 {
		t.Fatalf("try on a free user: %v %d %v", stored, holder, err)
	}
	members := rdb.SMembers(ctx, servicesKey(prefix, "pods")).Val()
	if len(members) != 1 || members[0] != "room" {
		t.Fatalf("services %v", members)
	}
	if removed, err := p[0].RemoveLinkedPodWithID(ctx, "a", 0, 0); err != nil || removed {
		t.Fatalf("compare-and-delete of another pod's link: %v %v", removed, err)
	}
	if removed, err := p[1].RemoveLinkedPodWithID(ctx, "a", 1, 30*time.Second); err != nil || !removed {
		t.Fatalf("compare-and-delete: %v %v", removed, err)
	}
	if v, ttl := linkOf(t, rdb, k, "a"); v != "1" || ttl <= 0 || ttl > 30*time.Second {
		t.Fatalf("kept link %q ttl %v, want a temporary 1 for 30 s", v, ttl)
	}
	if removed, err := p[2].RemoveLinkedPod(ctx, "b", 0); err != nil || !removed {
		t.Fatalf("remove: %v %v", removed, err)
	}
	if removed, err := p[2].RemoveLinkedPod(ctx, "nobody", 0); err != nil || removed {
		t.Fatalf("remove of no link: %v %v", removed, err)
	}
	if _, err := p[2].RemoveLinkedPod(ctx, "", 0); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("empty uid: %v", err)
	}
	if got := snapshotOf(t, rdb, k).pods; got[0].links != 0 || got[1].links != 1 || got[2].links != 0 {
		t.Fatalf("counts %+v", got)
	}
}

func TestHandOffMovesTheLinkKeepingItsKind(t *testing.T) {
	rdb, prefix := testRedis(t)
	ctx := context.Background()
	k := podRoute(t, rdb, prefix, 3, 0, 0, 9)
	p := pods(t, rdb, prefix, 3)
	if _, _, err := p[0].SetLinkedPod(ctx, "mover"); err != nil {
		t.Fatal(err)
	}
	if pod, moved, err := p[0].HandOff(ctx, "mover"); err != nil || !moved || pod != 1 {
		t.Fatalf("hand off: %d %v %v, want pod 1", pod, moved, err)
	}
	if v, _ := linkOf(t, rdb, k, "mover"); v != "1p" {
		t.Fatalf("link %q, want 1p", v)
	}
	if _, moved, err := p[0].HandOff(ctx, "mover"); err != nil || moved {
		t.Fatalf("a hand-off by a pod the user left moved it: %v %v", moved, err)
	}
	if err := p[0].SetRoutingState(ctx, RoutingShutdown); err != nil {
		t.Fatal(err)
	}
	if err := p[2].SetRoutingState(ctx, RoutingShutdown); err != nil {
		t.Fatal(err)
	}
	if _, moved, err := p[1].HandOff(ctx, "mover"); err != nil || moved {
		t.Fatalf("no other pod available, yet moved: %v %v", moved, err)
	}
}

// linkUsers links n users to pod (persistently) and returns them sorted.
func linkUsers(t *testing.T, s *ServerDriver, n int) []string {
	t.Helper()
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("u%04d", i)
		if _, _, err := s.SetLinkedPod(context.Background(), users[i]); err != nil {
			t.Fatal(err)
		}
	}
	return users
}

func TestLinkedUsersListsEachLiveLinkOnce(t *testing.T) {
	rdb, prefix := testRedis(t)
	podRoute(t, rdb, prefix, 2)
	p := pods(t, rdb, prefix, 2)
	want := linkUsers(t, p[0], 2500) // more than one page
	var got []string
	for uid, err := range p[0].LinkedUsers(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, uid)
	}
	sort.Strings(got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("listed %d users, want %d", len(got), len(want))
	}
}

func TestHandOffAllCallsBackOncePerUserBeforeItsMoveThenReportsShutdown(t *testing.T) {
	rdb, prefix := testRedis(t)
	ctx := context.Background()
	k := podRoute(t, rdb, prefix, 3)
	p := pods(t, rdb, prefix, 3)
	users := linkUsers(t, p[0], 300)
	var mu sync.Mutex
	called := map[string]int{}
	result, err := p[0].HandOffAll(ctx, HandOffOptions{Before: func(ctx context.Context, uid string) error {
		if v, _ := linkOf(t, rdb, k, uid); v != "0p" {
			return fmt.Errorf("%s moved before its callback: %q", uid, v)
		}
		mu.Lock()
		called[uid]++
		mu.Unlock()
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if result != (HandOffResult{Moved: 300}) {
		t.Fatalf("result %+v", result)
	}
	for _, uid := range users {
		if called[uid] != 1 {
			t.Fatalf("%s called back %d times", uid, called[uid])
		}
	}
	view := snapshotOf(t, rdb, k)
	if view.routable[0] || view.pods[0].links != 0 || view.pods[1].links+view.pods[2].links != 300 {
		t.Fatalf("after: routable %v, pods %+v", view.routable, view.pods)
	}
}

func TestHandOffAllLeavesAUserWhoseCallbackFails(t *testing.T) {
	rdb, prefix := testRedis(t)
	ctx := context.Background()
	podRoute(t, rdb, prefix, 2)
	p := pods(t, rdb, prefix, 2)
	linkUsers(t, p[0], 3)
	result, err := p[0].HandOffAll(ctx, HandOffOptions{Before: func(ctx context.Context, uid string) error {
		if uid == "u0001" {
			return errors.New("cannot save")
		}
		return nil
	}})
	if err != nil || result != (HandOffResult{Moved: 2, Failed: 1, Left: 1}) {
		t.Fatalf("result %+v, %v", result, err)
	}
}

func TestHandOffAllRetriesUntilAPodIsAvailableOrTimeIsUp(t *testing.T) {
	rdb, prefix := testRedis(t)
	ctx := context.Background()
	podRoute(t, rdb, prefix, 2)
	p := pods(t, rdb, prefix, 2)
	linkUsers(t, p[0], 2)
	if err := p[1].SetRoutingState(ctx, RoutingDenyNewCall); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	result, err := p[0].HandOffAll(ctx, HandOffOptions{Within: 300 * time.Millisecond, RetryEvery: 20 * time.Millisecond})
	if err != nil || result != (HandOffResult{Left: 2}) {
		t.Fatalf("nowhere to go: %+v, %v", result, err)
	}
	if spent := time.Since(start); spent < 280*time.Millisecond || spent > 2*time.Second {
		t.Fatalf("took %v, want about 300 ms", spent)
	}
	// Back to Ready, and pod 1 opens while pod 0 retries.
	if err := p[0].SetRoutingState(ctx, RoutingReady); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(150 * time.Millisecond)
		_ = p[1].SetRoutingState(context.Background(), RoutingReady)
	}()
	result, err = p[0].HandOffAll(ctx, HandOffOptions{Within: 5 * time.Second, RetryEvery: 20 * time.Millisecond})
	if err != nil || result != (HandOffResult{Moved: 2}) {
		t.Fatalf("a pod opened: %+v, %v", result, err)
	}
}

func TestHandOffAllStopsAtOnceWhenOnlyOutdatedPodsCouldTakeUsers(t *testing.T) {
	rdb, prefix := testRedis(t)
	ctx := context.Background()
	k := podRoute(t, rdb, prefix, 3)
	p := pods(t, rdb, prefix, 3)
	linkUsers(t, p[2], 4)
	if err := testScriptPutPhases.Run(ctx, rdb, []string{k.phases, k.config}, "0", ",1", "1", ",1", "2", ",1").Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	result, err := p[2].HandOffAll(ctx, HandOffOptions{Within: 10 * time.Second})
	if err != nil || result != (HandOffResult{Left: 4, Waiting: 4}) {
		t.Fatalf("result %+v, %v", result, err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("it retried instead of stopping")
	}
}

func TestHandOffAllWithinCutsOffAHangingCallbackAndCountsItsUserAsLeft(t *testing.T) {
	rdb, prefix := testRedis(t)
	ctx := context.Background()
	k := podRoute(t, rdb, prefix, 3)
	p := pods(t, rdb, prefix, 3)
	linkUsers(t, p[0], 5)
	var started atomic.Int32
	start := time.Now()
	result, err := p[0].HandOffAll(ctx, HandOffOptions{Concurrency: 1, Within: 300 * time.Millisecond,
		Before: func(ctx context.Context, uid string) error {
			if started.Add(1) == 3 {
				<-ctx.Done() // hangs until the deadline
				return ctx.Err()
			}
			return nil
		}})
	if err != nil || result != (HandOffResult{Moved: 2, Left: 3}) {
		t.Fatalf("result %+v, %v", result, err)
	}
	if spent := time.Since(start); spent > 2*time.Second {
		t.Fatalf("took %v", spent)
	}
	if snapshotOf(t, rdb, k).routable[0] {
		t.Fatal("no Shutdown after the deadline")
	}
	// A bound of (almost) nothing still counts who is left, and reports Shutdown.
	p1 := linkUsers(t, p[1], 7)
	result, err = p[1].HandOffAll(ctx, HandOffOptions{Within: time.Nanosecond})
	if err != nil || result.Left != len(p1) || result.Moved != 0 {
		t.Fatalf("within 1ns: %+v, %v", result, err)
	}
}

func TestHandOffAllReturnsTheCallersCancellation(t *testing.T) {
	rdb, prefix := testRedis(t)
	podRoute(t, rdb, prefix, 2)
	p := pods(t, rdb, prefix, 2)
	linkUsers(t, p[0], 3)
	ctx, cancel := context.WithCancel(context.Background())
	result, err := p[0].HandOffAll(ctx, HandOffOptions{Concurrency: 1, Before: func(ctx context.Context, uid string) error {
		cancel()
		return nil
	}})
	if !errors.Is(err, context.Canceled) || result.Left != -1 {
		t.Fatalf("%+v, %v; want Left -1 (not known), context.Canceled", result, err)
	}
	for _, bad := range []HandOffOptions{{Concurrency: -1}, {Within: -time.Second}, {RetryEvery: time.Microsecond}} {
		if _, err := p[0].HandOffAll(context.Background(), bad); !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("%+v: %v", bad, err)
		}
	}
}

func TestHandOffAllReturnsStoreUnavailableWhenRedisIsGone(t *testing.T) {
	rdb, prefix := testRedis(t)
	podRoute(t, rdb, prefix, 2)
	p := pods(t, rdb, prefix, 2)
	linkUsers(t, p[0], 3)
	gone := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer gone.Close()
	s, err := NewServerDriver(gone, "pods", "room", 0, ServerOptions{Prefix: prefix, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	result, err := s.HandOffAll(context.Background(), HandOffOptions{Within: time.Second})
	if !errors.Is(err, ErrStoreUnavailable) || result.Left != -1 {
		t.Fatalf("%+v, %v; want Left -1 (not known), ErrStoreUnavailable", result, err)
	}
}
