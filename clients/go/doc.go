// Package statefulroute is the Go client of stateful-route: sticky, load-aware routing of users
// to the pods of Kubernetes StatefulSets, compatible with the Python client by construction.
//
// Both clients share the wire protocol: the Redis key layout, the Lua scripts (the very same
// bytes, embedded from the project's lua folder; see README.md) and the change channel. The
// conformance vectors under the repository's conformance/ folder are played by both.
//
// Every operation takes a context.Context first and returns typed errors: test them with
// errors.Is against ErrInvalidInput, ErrNoAvailablePod, ErrPodPending, ErrStoreUnavailable and
// ErrStore, or errors.As into *InvalidInputError, *NoAvailablePodError, *PodPendingError and
// *StoreError for their fields.
//
// Deadlines and cancellation: a call bounded both by the caller's context and by the driver's
// Options.Timeout ends with whichever comes first, and its error says which. When the call
// gives up and the caller's context is done, or its deadline has passed (even if the context's
// own timer has not fired yet: go-redis's socket deadline, set to the same instant, may fire
// first), the error wraps the context's error: errors.Is(err, context.DeadlineExceeded) or
// errors.Is(err, context.Canceled), and it matches neither ErrStoreUnavailable nor ErrStore.
// Otherwise a timeout is the store's: Options.Timeout ran out while the caller's context was
// live, and the error is a *StoreError matching ErrStoreUnavailable (and os.ErrDeadlineExceeded)
// that never matches context.DeadlineExceeded or context.Canceled.
package statefulroute
