package statefulroute

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Whose deadline ended a call, with Redis frozen (every call hangs until a deadline): the
// caller's comes back as the caller's (context.DeadlineExceeded, no store fault) even when
// go-redis's socket deadline, set to the same instant, fires before the context's own timer;
// the driver's Timeout comes back as ErrStoreUnavailable, never as context.DeadlineExceeded.
// The race is narrow, so each kind of call is made many times.

const deadlineCalls = 50

func callersDeadline(t *testing.T, what string, i int, err error) {
	t.Helper()
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrStore) {
		t.Errorf("%s, call %d, the caller's deadline first: %v (deadline %v, store fault %v)",
			what, i, err, errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrStoreUnavailable))
	}
}

func storesTimeout(t *testing.T, what string, i int, err error) {
	t.Helper()
	if !errors.Is(err, ErrStoreUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Errorf("%s, call %d, Timeout first: %v (store fault %v, deadline %v)",
			what, i, err, errors.Is(err, ErrStoreUnavailable), errors.Is(err, context.DeadlineExceeded))
	}
}

func TestTheCallersDeadlineIsNeverAStoreFault(t *testing.T) {
	rdb, freeze, _ := frozenRedis(t)
	prefix := "srgodl"
	writeTable(t, rdb, newRouteKeys(prefix, "games", "room"), step{Pods: podSpecs(0, 1)})
	d, err := NewClientDriver(rdb, Options{Namespaces: []string{"games"}, Prefix: prefix}) // Timeout 1 s
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s, err := NewServerDriver(rdb, "games", "room", 0, ServerOptions{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	warm(t, d)
	freeze()
	for i := range deadlineCalls {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Millisecond)
		_, err := d.ComputeLinkedPod(cctx, "games", fmt.Sprintf("u%d", i), "room")
		cancel()
		callersDeadline(t, "ComputeLinkedPod", i, err)
		cctx, cancel = context.WithTimeout(ctx, 15*time.Millisecond)
		err = s.SetLoadState(cctx, 1)
		cancel()
		callersDeadline(t, "SetLoadState", i, err)
	}
}

func TestTheDriversTimeoutIsAStoreFaultNotADeadline(t *testing.T) {
	rdb, freeze, _ := frozenRedis(t)
	prefix := "srgoto"
	writeTable(t, rdb, newRouteKeys(prefix, "games", "room"), step{Pods: podSpecs(0, 1)})
	timeout := 20 * time.Millisecond
	d, err := NewClientDriver(rdb, Options{Namespaces: []string{"games"}, Prefix: prefix, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s, err := NewServerDriver(rdb, "games", "room", 0, ServerOptions{Prefix: prefix, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a deadline, far off
	defer cancel()
	warm(t, d)
	freeze()
	for i := range deadlineCalls / 5 {
		_, err := d.ComputeLinkedPod(ctx, "games", fmt.Sprintf("u%d", i), "room")
		storesTimeout(t, "ComputeLinkedPod", i, err)
		storesTimeout(t, "SetLoadState", i, s.SetLoadState(ctx, 1))
		_, err = d.ComputeLinkedPod(context.Background(), "games", fmt.Sprintf("u%d", i), "room")
		storesTimeout(t, "ComputeLinkedPod without a deadline", i, err)
	}
}

// warm places a first user, so the scripts are loaded and the route's view is read.
func warm(t *testing.T, d *ClientDriver) {
	t.Helper()
	var err error
	for range 20 { // a Timeout this short may not cover a first connection on a busy machine
		if _, err = d.ComputeLinkedPod(context.Background(), "games", "first", "room"); err == nil {
			return
		}
	}
	t.Fatal(err)
}
