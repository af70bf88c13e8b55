package statefulroute

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// HandOffAll never reports Left: 0 while users are linked here, as pod/handoff.py's
// hand_off_users never does.

// podZero is pod 0 of a route of the pods given, with users linked to it.
func podZero(t *testing.T, rdb *redis.Client, prefix string, pods []podSpec, users int) (routeKeys, *ServerDriver, []string) {
	t.Helper()
	k := newRouteKeys(prefix, "pods", "room")
	writeTable(t, rdb, k, step{Pods: pods})
	t.Cleanup(func() { deletePrefix(rdb, prefix) })
	s := serverDriver(t, rdb, prefix, "pods", "room", 0)
	return k, s, linkUsers(t, s, users)
}

// strandedPod is pod 0 of a route whose only other pod is not Ready, with users linked to it.
func strandedPod(t *testing.T, rdb *redis.Client, prefix string, users int) (routeKeys, *ServerDriver, []string) {
	t.Helper()
	return podZero(t, rdb, prefix, notReady(podSpecs(0, 1), 1), users)
}

// With no pod to take them, the users are retried until Within, then counted as left. A pause
// between passes ends at the deadline itself (RetryEvery > Within), where the call listing the
// users next may see go-redis's socket deadline fire before the context's: many short runs.
func TestHandOffAllWithNowhereToGoLeavesEveryoneAtItsDeadline(t *testing.T) {
	rdb, prefix := connectedRedis(t)
	k, s, users := strandedPod(t, rdb, prefix, 5)
	for i := range 50 {
		start := time.Now()
		result, err := s.HandOffAll(context.Background(), HandOffOptions{Within: 20 * time.Millisecond, RetryEvery: time.Second})
		if err != nil || result != (HandOffResult{Left: len(users)}) {
			t.Fatalf("run %d: %+v, %v", i, result, err)
		}
		if spent := time.Since(start); spent < 20*time.Millisecond {
			t.Fatalf("run %d: stopped after %v, before Within", i, spent)
		}
	}
	for _, uid := range users {
		if link, _ := linkOf(t, rdb, k, uid); link != "0p" {
			t.Fatalf("%s: link %q", uid, link)
		}
	}
}

// A Redis fault midway is returned with what was done, Left counted in Redis when it answers...
func TestHandOffAllFaultMidwayCountsWhoIsLeft(t *testing.T) {
	rdb, prefix := connectedRedis(t)
	k, s, users := strandedPod(t, rdb, prefix, 5)
	result, err := s.HandOffAll(context.Background(), HandOffOptions{Concurrency: 1,
		Before: func(ctx context.Context, uid string) error {
			return rdb.Set(ctx, k.available, "not a sorted set", 0).Err() // HAND_OFF reads it
		}})
	if !errors.Is(err, ErrStore) || errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("err %v, want ErrStore", err)
	}
	if result != (HandOffResult{Left: len(users)}) {
		t.Fatalf("result %+v, want Left %d", result, len(users))
	}
}

// ...and -1 (not known) when it does not.
func TestHandOffAllFaultMidwayWithRedisGoneLeavesLeftUnknown(t *testing.T) {
	rdb, freeze, _ := frozenRedis(t)
	prefix := "srgoho"
	k := newRouteKeys(prefix, "pods", "room")
	writeTable(t, rdb, k, step{Pods: podSpecs(0, 1)})
	s, err := NewServerDriver(rdb, "pods", "room", 0, ServerOptions{Prefix: prefix, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	linkUsers(t, s, 3)
	calls := 0
	start := time.Now()
	result, err := s.HandOffAll(context.Background(), HandOffOptions{Concurrency: 1,
		Before: func(ctx context.Context, uid string) error {
			if calls++; calls == 2 { // one user moved, then Redis stops answering
				freeze()
			}
			return nil
		}})
	if !errors.Is(err, ErrStoreUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want ErrStoreUnavailable", err)
	}
	if result.Left != -1 || result.Moved > 1 || result.Failed != 0 || result.Waiting != 0 {
		t.Fatalf("result %+v, want Left -1, Moved at most 1", result)
	}
	if spent := time.Since(start); spent > 5*time.Second {
		t.Fatalf("took %v", spent)
	}
}

// Case A of an outside review: the first user is unlinked by its own Before (the hand-off finds
// it gone), then linked here again by the next Before. It is handed off in the next pass like
// any other user (Before runs again: its state here is new), and Left is counted in Redis.
func TestHandOffAllHandsOffAUserLinkedHereAgainAfterItWasGone(t *testing.T) {
	rdb, prefix := connectedRedis(t)
	k, s, _ := podZero(t, rdb, prefix, podSpecs(0, 1), 2)
	var calls []string
	result, err := s.HandOffAll(context.Background(), HandOffOptions{Concurrency: 1, Within: 5 * time.Second,
		Before: func(ctx context.Context, uid string) error {
			calls = append(calls, uid)
			switch len(calls) {
			case 1:
				_, err := s.RemoveLinkedPod(ctx, uid, 0)
				return err
			case 2:
				_, _, err := s.SetLinkedPod(ctx, calls[0])
				return err
			}
			return nil
		}})
	if err != nil || result != (HandOffResult{Moved: 2}) {
		t.Fatalf("%+v, %v (calls %v)", result, err, calls)
	}
	if link, _ := linkOf(t, rdb, k, calls[0]); link != "1p" {
		t.Fatalf("%s: link %q, want 1p", calls[0], link)
	}
	if len(calls) != 3 || calls[2] != calls[0] {
		t.Fatalf("calls %v", calls)
	}
	if n, err := s.countLinked(context.Background()); err != nil || n != 0 {
		t.Fatalf("linked here: %d, %v", n, err)
	}
}

// Case B of an outside review, made deterministic: Before links a new user here, then waits
// until the deadline abandons it. No listing ever saw the new user: Left counts it.
func TestHandOffAllCountsAUserLinkedHereDuringItsLastPassAsLeft(t *testing.T) {
	rdb, prefix := connectedRedis(t)
	k, s, _ := podZero(t, rdb, prefix, podSpecs(0, 1), 1)
	result, err := s.HandOffAll(context.Background(), HandOffOptions{Within: 300 * time.Millisecond,
		Before: func(ctx context.Context, uid string) error {
			if _, _, err := s.SetLinkedPod(ctx, "late"); err != nil {
				return err
			}
			<-ctx.Done()
			return ctx.Err()
		}})
	if err != nil || result != (HandOffResult{Left: 2}) {
		t.Fatalf("%+v, %v, want Left 2", result, err)
	}
	if link, _ := linkOf(t, rdb, k, "late"); link != "0p" {
		t.Fatalf("late: link %q", link)
	}
}

// Seeded scenarios (pod/handoff.py's twin test): Before unlinks its own user, links it here again
// (the hand-off found it gone) and links new users here while the passes run. Left is always
// exactly who is linked here at the end, and pod 1 takes every user in the end.
func TestHandOffAllLeftIsTheCountInRedisWhateverBeforeDoes(t *testing.T) {
	rdb, prefix := connectedRedis(t)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	for n := range uint64(8) {
		scenario := fmt.Sprintf("%ss%d", prefix, n)
		rng := rand.New(rand.NewPCG(seed, n))
		_, s, users := podZero(t, rdb, scenario, podSpecs(0, 1), 1+rng.IntN(11))
		var (
			mu      sync.Mutex // Before runs on several workers
			removed []string
			fresh   int
		)
		actions := rng.IntN(12)
		meddle := func(ctx context.Context, uid string) error {
			mu.Lock()
			defer mu.Unlock()
			if actions <= 0 {
				return nil
			}
			actions--
			switch choice := rng.IntN(3); {
			case choice == 0: // its own user: the hand-off finds it gone
				found, err := s.RemoveLinkedPod(ctx, uid, 0)
				if found {
					removed = append(removed, uid)
				}
				return err
			case choice == 1 && len(removed) > 0: // found gone (or about to be), linked here again
				i := rng.IntN(len(removed))
				again := removed[i]
				removed = append(removed[:i], removed[i+1:]...)
				_, _, err := s.SetLinkedPod(ctx, again)
				return err
			case fresh < 6:
				fresh++
				_, _, err := s.SetLinkedPod(ctx, fmt.Sprintf("new%d", fresh))
				return err
			default:
				_, _, err := s.SetLinkedPod(ctx, users[rng.IntN(len(users))])
				return err
			}
		}
		result, err := s.HandOffAll(context.Background(), HandOffOptions{
			Concurrency: 1 + rng.IntN(3), Within: 5 * time.Second, Before: meddle})
		here, countErr := s.countLinked(context.Background())
		if err != nil || countErr != nil || result.Left != here || result != (HandOffResult{Moved: result.Moved}) {
			t.Fatalf("seed %d+%d: %+v, %v; linked here %d, %v", seed, n, result, err, here, countErr)
		}
	}
}
