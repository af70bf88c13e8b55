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
package statefulroute
