package statefulroute

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors: test with errors.Is. Every error this package returns on purpose matches
// one of them; the typed errors below carry the details (errors.As).
var (
	// ErrInvalidInput: an argument is malformed (*InvalidInputError names it). Nothing was
	// written.
	ErrInvalidInput = errors.New("statefulroute: invalid input")
	// ErrNoAvailablePod: no pod of the service takes new users now, or the pod asked for is
	// not a routable pod of it (*NoAvailablePodError). *PodPendingError matches it too.
	ErrNoAvailablePod = errors.New("statefulroute: no available pod")
	// ErrPodPending: the user's pod is being replaced early in a rolling update; retry soon
	// (*PodPendingError, which also matches ErrNoAvailablePod).
	ErrPodPending = errors.New("statefulroute: pod pending")
	// ErrStore: Redis answered, but not as the link store expects (corrupt data, a script
	// error). ErrStoreUnavailable errors match it too, as Python's StoreUnavailable is a
	// StoreError.
	ErrStore = errors.New("statefulroute: store error")
	// ErrStoreUnavailable: Redis did not answer within the driver's Timeout (the caller's
	// context still live: see the package documentation), or the connection failed.
	ErrStoreUnavailable = errors.New("statefulroute: store unavailable")
	// ErrLayoutTooNew: the route's Redis layout is newer than this release knows (a newer
	// release wrote it); the script refused before reading or writing anything
	// (*LayoutTooNewError names both versions). It matches ErrStore too, as Python's
	// LayoutTooNew is a StoreError. Upgrade this client (README "Compatibility").
	ErrLayoutTooNew = errors.New("statefulroute: route layout too new")
)

// InvalidInputError is ErrInvalidInput with the argument (Field) and what is wrong with it.
// Python: stateful_route.InvalidInput (.field, .problem).
type InvalidInputError struct {
	Field   string
	Problem string
}

func (e *InvalidInputError) Error() string { return e.Field + ": " + e.Problem }

// Is reports whether target is ErrInvalidInput.
func (e *InvalidInputError) Is(target error) bool { return target == ErrInvalidInput }

func invalid(field, problem string) error {
	return &InvalidInputError{Field: field, Problem: problem}
}

func invalidf(field, format string, args ...any) error {
	return &InvalidInputError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// NoAvailablePodError is ErrNoAvailablePod for one service. Pod is the pod asked for when it
// is not a routable pod of the service (SetLinkedPodIfAbsent), else HasPod is false.
// Python: stateful_route.NoAvailablePod (.namespace, .service, .pod).
type NoAvailablePodError struct {
	Namespace string
	Service   string
	Pod       int
	HasPod    bool
}

func (e *NoAvailablePodError) Error() string {
	if e.HasPod {
		return fmt.Sprintf("pod %d is not a routable pod of service %s/%s", e.Pod, e.Namespace, e.Service)
	}
	return fmt.Sprintf("no available pod for service %s/%s", e.Namespace, e.Service)
}

// Is reports whether target is ErrNoAvailablePod.
func (e *NoAvailablePodError) Is(target error) bool { return target == ErrNoAvailablePod }

// PodPendingError: the user's pod was replaced early in a rolling update, before any pod of the
// new revision took users; rather than be placed on a pod the rollout replaces next (and move
// twice), the user waits. Retry soon; after WaitAtMost the user is placed on any available pod.
// It matches both ErrPodPending and ErrNoAvailablePod, so code that retries the latter handles
// it. Python: stateful_route.PodPending (.wait_at_most, seconds).
type PodPendingError struct {
	Namespace  string
	Service    string
	WaitAtMost time.Duration
}

func (e *PodPendingError) Error() string {
	return fmt.Sprintf("the pod of this user of %s/%s is being replaced: retry (placed anyway within %.1fs)",
		e.Namespace, e.Service, e.WaitAtMost.Seconds())
}

// Is reports whether target is ErrPodPending or ErrNoAvailablePod.
func (e *PodPendingError) Is(target error) bool {
	return target == ErrPodPending || target == ErrNoAvailablePod
}

// StoreError is a Redis fault met by Op: ErrStoreUnavailable when Unavailable (a timeout, a
// refused or cut connection, a cluster down or reconfiguring), else ErrStore. Err is the cause
// (a go-redis or network error; for the driver's own Timeout, an error matching
// os.ErrDeadlineExceeded): it never matches context.DeadlineExceeded or context.Canceled, which
// are the caller's. Its message never holds a password. Python: StoreUnavailable / StoreError.
type StoreError struct {
	Op          string
	Unavailable bool
	Err         error
}

func (e *StoreError) Error() string {
	what := "redis error"
	if e.Unavailable {
		what = "redis unavailable"
	}
	cause := ""
	if e.Err != nil {
		cause = ": " + RedactText(e.Err.Error())
	}
	return fmt.Sprintf("%s: %s%s", e.Op, what, cause)
}

// Is reports whether target is ErrStore, or ErrStoreUnavailable for an unavailable store.
func (e *StoreError) Is(target error) bool {
	return target == ErrStore || (e.Unavailable && target == ErrStoreUnavailable)
}

// Unwrap returns the cause.
func (e *StoreError) Unwrap() error { return e.Err }

// LayoutTooNewError is ErrLayoutTooNew: the route records layout Found, this release knows
// layout Known (Layout). Python: stateful_route.LayoutTooNew (.found, .known).
type LayoutTooNewError struct {
	Op    string
	Found int
	Known int
}

func (e *LayoutTooNewError) Error() string {
	return fmt.Sprintf("%s: the route's Redis layout is %d, newer than layout %d this release knows: upgrade stateful-route",
		e.Op, e.Found, e.Known)
}

// Is reports whether target is ErrLayoutTooNew or ErrStore.
func (e *LayoutTooNewError) Is(target error) bool {
	return target == ErrLayoutTooNew || target == ErrStore
}
