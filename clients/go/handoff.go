package statefulroute

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// HandOffOptions configure HandOffAll. Zero values take the defaults noted.
type HandOffOptions struct {
	// Concurrency: users handed off at once (default 16, at most 10,000).
	Concurrency int
	// Before is called once per user, always before its link moves: the place to persist or
	// push the user's state. If it returns an error the user's link stays (Failed). Its context
	// ends at the deadline (Within): a callback still running then is abandoned and its user
	// stays (Left).
	Before func(ctx context.Context, uid string) error
	// Within bounds the whole call (default 30 s); an earlier deadline of the caller's context
	// bounds it too.
	Within time.Duration
	// RetryEvery: how often users who found no other pod available are tried again (default
	// 250 ms, at least 1 ms).
	RetryEvery time.Duration
}

// HandOffResult is what HandOffAll did (Python's HandOffResult).
type HandOffResult struct {
	Moved  int // links moved to another pod
	Failed int // users whose Before callback failed: their link stayed here
	// Left: users linked here when it finished (failed and interrupted ones included), counted
	// in Redis at the end; with an error, counted after the fault, or -1 when not known (Redis
	// did not answer, or the caller cancelled): never 0 while users are linked here.
	Left    int
	Waiting int // of Left, users only outdated pods could take (a rolling update): see HandOffAll
}

// HandOffAll hands every user of this pod off, then reports Shutdown: what a pod does when told
// to stop (a preStop hook).
//
// It reports DenyNewCall first (no new users arrive meanwhile), then for each linked user,
// Concurrency at a time, calls Before(uid) and moves its link (HandOff); a user found unlinked
// who is linked here again is handed off by a later pass (Before is called again: its state here
// is new). Users who find no other pod available are retried until Within has passed, unless only outdated pods could take them
// (early in a rolling update, when no updated pod can start before this one goes): then it stops
// at once, and they are Waiting (evicted after Shutdown, they wait for an updated pod: the
// route's rolloutWaitSeconds). Within bounds the whole call. Shutdown is reported in every case
// (within the driver's Timeout), so the operator evicts whoever is Left (and rebinds them if the
// route is Eager). An earlier deadline of ctx ends it as Within does (no error). A Redis fault
// returns ErrStoreUnavailable/ErrStore after trying to report Shutdown, with Moved and Failed so
// far and Left counted in Redis (-1 if it does not answer); the caller's cancellation
// (context.Canceled) returns at once with Left -1, reporting nothing more.
func (s *ServerDriver) HandOffAll(ctx context.Context, opts HandOffOptions) (HandOffResult, error) {
	if opts.Concurrency == 0 {
		opts.Concurrency = 16
	}
	if err := checkInt("concurrency", opts.Concurrency, 1, 10_000); err != nil {
		return HandOffResult{}, err
	}
	if opts.Within == 0 {
		opts.Within = 30 * time.Second
	}
	if err := checkDuration("within", opts.Within, 0); err != nil {
		return HandOffResult{}, err
	}
	if opts.RetryEvery == 0 {
		opts.RetryEvery = 250 * time.Millisecond
	}
	if err := checkDuration("retry_every", opts.RetryEvery, time.Millisecond); err != nil {
		return HandOffResult{}, err
	}
	started := time.Now()
	deadline := started.Add(opts.Within)
	bounded, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// Store calls that must finish once begun (a link move, the Shutdown report) outlive the
	// deadline, bounded by Timeout; the caller's cancellation is checked between them.
	store := context.WithoutCancel(ctx)
	err := s.Register(bounded)
	if err == nil {
		err = s.SetRoutingState(bounded, RoutingDenyNewCall)
	}
	if err != nil && !pastDeadline(bounded, err) {
		return s.interrupted(store, HandOffResult{}, err)
	}
	run := &handOffRun{
		s: s, before: opts.Before, workers: opts.Concurrency, retry: opts.RetryEvery,
		ctx: bounded, store: store, deadline: deadline,
		prepared: map[string]bool{}, failed: map[string]bool{}, waiting: map[string]bool{},
	}
	result, err := run.passes()
	if err != nil {
		return s.interrupted(store, result, err)
	}
	if err := s.SetRoutingState(store, RoutingShutdown); err != nil {
		return result, err
	}
	s.log.Info("pod handed off", "event", "hand_off_all", "moved", result.Moved, "failed", result.Failed,
		"left", result.Left, "waiting", result.Waiting, "seconds", time.Since(started).Seconds())
	return result, nil
}

// interrupted ends a HandOffAll that err cut short. After a fault it reports Shutdown (the
// operator then evicts whoever is left; the caller gets the fault) and counts who is left, unless
// Redis did not answer: then, as after the caller's cancellation, Left is -1 (not known).
func (s *ServerDriver) interrupted(store context.Context, result HandOffResult, err error) (HandOffResult, error) {
	result.Left, result.Waiting = -1, 0
	if errors.Is(err, context.Canceled) {
		return result, err
	}
	if errors.Is(s.SetRoutingState(store, RoutingShutdown), ErrStoreUnavailable) {
		return result, err
	}
	if left, countErr := s.countLinked(store); countErr == nil {
		result.Left = left
	}
	return result, err
}

// pastDeadline: err is the bounded context's own deadline (not a store timeout or a
// cancellation), its timer fired or not (callerErr).
func pastDeadline(bounded context.Context, err error) bool {
	return errors.Is(err, context.DeadlineExceeded) && errors.Is(callerErr(bounded), context.DeadlineExceeded)
}

// handOffRun is one HandOffAll (pod/handoff.py hand_off_users): passes over the pod's users,
// with workers, until none is left here, a pass changes nothing, or the deadline.
type handOffRun struct {
	s        *ServerDriver
	before   func(context.Context, string) error
	workers  int
	retry    time.Duration
	ctx      context.Context // ends at the deadline or with the caller's context
	store    context.Context // for calls that finish once begun
	deadline time.Time

	mu       sync.Mutex
	prepared map[string]bool // Before done (since the user was last found unlinked)
	failed   map[string]bool // Before failed: the link stays
	waiting  map[string]bool // only outdated pods could take them, in the last pass
	moved    int
}

// handOutcome is what one user's hand-off did.
type handOutcome int

const (
	handDone     handOutcome = iota // moved, or its Before failed or was cut off: it stays
	handStranded                    // no other pod available: retried
	handGone                        // not linked here (unlinked or moved meanwhile)
)

// passes runs the passes, then counts in Redis who is left (one store timeout): not from the
// listings, so a user linked here after the last one is counted too.
func (r *handOffRun) passes() (HandOffResult, error) {
	if err := r.loop(); err != nil {
		return r.result(0), err // the caller counts who is left
	}
	left, err := r.s.countLinked(r.store)
	return r.result(left), err
}

func (r *handOffRun) result(left int) HandOffResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return HandOffResult{Moved: r.moved, Failed: len(r.failed), Left: left, Waiting: min(len(r.waiting), left)}
}

func (r *handOffRun) loop() error {
	for {
		var pending []string
		err := r.s.linkedUsers(r.ctx, func(uid string) bool {
			r.mu.Lock()
			if !r.failed[uid] {
				pending = append(pending, uid)
			}
			r.mu.Unlock()
			return true
		})
		if err != nil {
			if pastDeadline(r.ctx, err) {
				return nil
			}
			return err
		}
		if len(pending) == 0 {
			return nil
		}
		r.mu.Lock()
		clear(r.waiting)
		r.mu.Unlock()
		stranded, done, err := r.pass(pending)
		if err != nil {
			return err
		}
		r.mu.Lock()
		waiting := len(r.waiting) > 0
		r.mu.Unlock()
		// Every user gone: nothing here to hand off (a stale index entry must not loop).
		if !time.Now().Before(r.deadline) || r.ctx.Err() != nil || waiting || stranded+done == 0 {
			return r.cancelled()
		}
		if stranded > 0 {
			pause := time.NewTimer(min(r.retry, time.Until(r.deadline)))
			select {
			case <-pause.C:
			case <-r.ctx.Done():
				pause.Stop()
				return r.cancelled()
			}
		}
	}
}

// cancelled is the caller's cancellation, if that is what ended the run (not the deadline).
func (r *handOffRun) cancelled() error {
	if errors.Is(r.ctx.Err(), context.Canceled) {
		return fmt.Errorf("statefulroute: hand off: %w", r.ctx.Err())
	}
	return nil
}

// pass hands pending off with the workers (each user to exactly one); it returns how many found
// no other pod and how many were done (handDone), or the first fault (the other workers then
// stop taking users).
func (r *handOffRun) pass(pending []string) (int, int, error) {
	var (
		mu       sync.Mutex
		next     int
		stranded int
		done     int
		first    error
		wg       sync.WaitGroup
	)
	take := func() (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		if first != nil || next >= len(pending) || r.ctx.Err() != nil {
			return "", false
		}
		next++
		return pending[next-1], true
	}
	for range min(r.workers, len(pending)) {
		wg.Go(func() {
			for {
				uid, ok := take()
				if !ok {
					return
				}
				outcome, err := r.one(uid)
				mu.Lock()
				switch {
				case err != nil:
					if first == nil {
						first = err
					}
				case outcome == handStranded:
					stranded++
				case outcome == handDone:
					done++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return stranded, done, first
}

// one hands one user off.
func (r *handOffRun) one(uid string) (handOutcome, error) {
	r.mu.Lock()
	prepared := r.prepared[uid]
	r.mu.Unlock()
	if !prepared {
		if r.before != nil {
			ok, err := r.callBefore(uid)
			if !ok { // cut off at the deadline: the user stays (Left)
				return handDone, nil
			}
			if err != nil { // the pod's own code: its user stays, the others go on
				r.mu.Lock()
				r.failed[uid] = true
				r.mu.Unlock()
				r.s.log.Warn("hand-off callback failed", "event", "hand_off_callback_failed",
					"uid", shown(uid, 80), "error", err.Error())
				return handDone, nil
			}
		}
		r.mu.Lock()
		r.prepared[uid] = true
		r.mu.Unlock()
	}
	done, err := r.s.handOff(r.store, uid)
	if err != nil {
		return handDone, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case !done.linked: // moved, removed or expired meanwhile: if linked here again, a new user
		delete(r.prepared, uid)
		return handGone, nil
	case done.pod < 0:
		if done.outdated {
			r.waiting[uid] = true
		}
		return handStranded, nil
	default:
		r.moved++
		return handDone, nil
	}
}

// callBefore runs Before until it returns or the run ends; ok is false when the run ended
// first (the callback, whose context has ended, is abandoned).
func (r *handOffRun) callBefore(uid string) (ok bool, err error) {
	if r.ctx.Err() != nil {
		return false, nil
	}
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("panic: %v", p)
			}
		}()
		done <- r.before(r.ctx, uid)
	}()
	select {
	case err := <-done:
		if err != nil && r.ctx.Err() != nil {
			return false, nil // it gave up because the run ended
		}
		return true, err
	case <-r.ctx.Done():
		return false, nil
	}
}
