package statefulroute

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// unavailableReplies are Redis error replies that say Redis cannot serve now (a cluster down
// or reconfiguring, a replica read-only mid-failover, a server loading its data), or cannot
// serve this client (a wrong or missing password: redis-py's AuthenticationError is a
// ConnectionError), as store/faults.py counts them: StoreUnavailable, not StoreError.
var unavailableReplies = []string{"CLUSTERDOWN", "TRYAGAIN", "READONLY", "MASTERDOWN", "LOADING",
	"WRONGPASS", "NOAUTH", "ERR invalid password", "ERR AUTH <password> called without any password",
	"ERR Client sent AUTH, but no password is set"}

// tooNew is the error every script raises for a route of a newer layout (lua/include/layout.lua;
// store/faults.py reads it with the same pattern).
var tooNew = regexp.MustCompile(`LAYOUT_TOO_NEW route layout (\d+), this release knows (\d+)`)

// layoutError is the *LayoutTooNewError a Redis error reply names, or nil.
func layoutError(op, msg string) error {
	found := tooNew.FindStringSubmatch(msg)
	if found == nil {
		return nil
	}
	f, err1 := strconv.Atoi(found[1])
	k, err2 := strconv.Atoi(found[2])
	if err1 != nil || err2 != nil {
		return nil
	}
	return &LayoutTooNewError{Op: op, Found: f, Known: k}
}

// fault turns an error met by op into the package's errors. The caller's context decides
// first (callerErr): when it is done, or its deadline has passed, the call ended for the caller
// and its error is returned wrapped as it is, whatever the call met (go-redis's socket deadline,
// set from the same instant, may fire before the context's own timer). Any other fault is a
// *StoreError, unavailable unless Redis answered with an error of its own, whose cause never
// matches a context error (storeCause). Never call it with redis.Nil.
func fault(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := callerErr(ctx); ctxErr != nil {
		return fmt.Errorf("statefulroute: %s: %w", op, ctxErr)
	}
	var reply redis.Error
	if errors.As(err, &reply) && !errors.Is(err, redis.ErrClosed) {
		msg := reply.Error()
		if tooNew := layoutError(op, msg); tooNew != nil {
			return tooNew
		}
		for _, prefix := range unavailableReplies {
			if strings.HasPrefix(msg, prefix) {
				return &StoreError{Op: op, Unavailable: true, Err: err}
			}
		}
		if !strings.HasPrefix(msg, "redis: ") { // a server's reply, not a client-side condition
			return &StoreError{Op: op, Err: err}
		}
	}
	return &StoreError{Op: op, Unavailable: true, Err: storeCause(err)}
}

// callerErr is ctx's error, or context.DeadlineExceeded once its deadline has passed even if its
// timer has not fired yet: a call that gives up past the caller's deadline gave up for it.
func callerErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if deadline, ok := ctx.Deadline(); ok && !time.Now().Before(deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// storeCause is err, or, when err matches a context error (the driver's own Timeout, or a
// go-redis error wrapping one), the same message detached from it: a store fault must not
// pass for the caller's deadline or cancellation.
func storeCause(err error) error {
	deadline := errors.Is(err, context.DeadlineExceeded)
	if !deadline && !errors.Is(err, context.Canceled) {
		return err
	}
	return &timedOut{msg: err.Error(), deadline: deadline}
}

// timedOut is a context error's message (and, for a deadline, os.ErrDeadlineExceeded: the
// timeout a net.Error reports) without the context error.
type timedOut struct {
	msg      string
	deadline bool
}

func (e *timedOut) Error() string { return e.msg }

func (e *timedOut) Unwrap() error {
	if e.deadline {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// corrupt is a reply the store cannot read.
func corrupt(op, format string, args ...any) error {
	return &StoreError{Op: op, Err: fmt.Errorf(format, args...)}
}

// within runs call with a deadline of d (the driver's timeout) under ctx, and returns by that
// deadline whatever the client does: go-redis honours a context's deadline only with
// ContextTimeoutEnabled (Connect sets it; a client built elsewhere may not), and not while it
// dials. A call abandoned so ends on its own, within the client's socket timeouts.
func within[T any](ctx context.Context, d time.Duration, op string, call func(context.Context) (T, error)) (T, error) {
	inner, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	type result struct {
		out T
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := call(inner)
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		if r.err != nil && !errors.Is(r.err, redis.Nil) {
			return r.out, fault(ctx, op, r.err)
		}
		return r.out, r.err
	case <-inner.Done():
		var zero T
		return zero, fault(ctx, op, fmt.Errorf("no answer within %v: %w", d, inner.Err()))
	}
}
