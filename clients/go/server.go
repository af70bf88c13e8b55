package statefulroute

import (
	"context"
	"iter"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RoutingState is what a pod accepts (core/state.py RoutingState); a higher value is more
// restrictive.
type RoutingState int

// The routing states a pod reports.
const (
	// RoutingReady: the pod takes new users.
	RoutingReady RoutingState = routingReady
	// RoutingDenyNewCall: the pod keeps its users but takes no new ones (drained).
	RoutingDenyNewCall RoutingState = routingDenyNewCall
	// RoutingShutdown: the pod is going; the operator evicts its users.
	RoutingShutdown RoutingState = routingShutdown
)

// String is the spelling of annotations, the CR status and the CLI.
func (s RoutingState) String() string {
	switch s {
	case RoutingReady:
		return "Ready"
	case RoutingDenyNewCall:
		return "DenyNewCall"
	case RoutingShutdown:
		return "Shutdown"
	}
	return "RoutingState(" + strconv.Itoa(int(s)) + ")"
}

// The pod side's scripts (the client's are in scripts.go).
var (
	scriptServerReport = newScript("server_report")
	scriptRemove       = newScript("remove")
	scriptHandOff      = newScript("hand_off")
	scriptLinked       = newScript("linked")
	scriptCount        = newScript("count")
	scriptMigrateLinks = newScript("migrate_links")
)

// ServerOptions configure a ServerDriver. Zero values take the defaults noted.
type ServerOptions struct {
	// Prefix of every key (default "sr"); the same as the gateways'.
	Prefix string
	// Timeout of each Redis call (default 1 s); past it a call fails with ErrStoreUnavailable
	// (a caller's deadline that comes first: context.DeadlineExceeded, see the package doc).
	Timeout time.Duration
	// Logger for events (hand-offs, failed callbacks, corrupt links); default slog.Default().
	Logger *slog.Logger
}

// ServerDriver is the pod side (Python's stateful_route.ServerDriver): one pod (its ordinal) of
// one route (namespace, service). It reports the pod's load and routing state, confirms links
// persistent, removes them, and hands users off to other pods before the pod stops.
//
// Reports and links are written only into a route that has a table: while it has none
// (deleted, or not written yet) they fail with *NoAvailablePodError and write nothing, so
// nothing a pod writes after its route was deleted outlives the deletion. Safe for concurrent
// use. It does not own the Redis client.
type ServerDriver struct {
	rdb  redis.UniversalClient
	keys routeKeys
	pod  int
	opts ServerOptions
	log  *slog.Logger

	mu         sync.Mutex
	registered bool // the service is in its namespace's set (SADD done by this driver)
}

// NewServerDriver returns the ServerDriver of pod podIndex of the route (namespace, service),
// checking its arguments as the Python ServerDriver does. It does no I/O: call Register (or
// any report) to record the service in its namespace (Python's `async with`).
func NewServerDriver(rdb redis.UniversalClient, namespace, service string, podIndex int, opts ServerOptions) (*ServerDriver, error) {
	if rdb == nil {
		return nil, invalid("redis", "must be a client")
	}
	if err := checkPod("pod_index", podIndex); err != nil {
		return nil, err
	}
	if err := checkDNSLabel("namespace", namespace); err != nil {
		return nil, err
	}
	if err := checkDNSLabel("service", service); err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = "sr"
	}
	if err := checkPrefix(opts.Prefix); err != nil {
		return nil, err
	}
	if opts.Timeout == 0 {
		opts.Timeout = time.Second
	}
	if err := checkDuration("timeout", opts.Timeout, time.Millisecond); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &ServerDriver{
		rdb:  rdb,
		keys: newRouteKeys(opts.Prefix, namespace, service),
		pod:  podIndex,
		opts: opts,
		log:  opts.Logger.With("namespace", namespace, "service", service, "pod", podIndex),
	}, nil
}

// PodIndex is the pod this driver speaks for.
func (s *ServerDriver) PodIndex() int { return s.pod }

// Register records the service in its namespace's set of services (once per driver), so
// gateways' GetLinkService find it.
func (s *ServerDriver) Register(ctx context.Context) error {
	s.mu.Lock()
	done := s.registered
	s.mu.Unlock()
	if done {
		return nil
	}
	_, err := within(ctx, s.opts.Timeout, "register service", func(ctx context.Context) (int64, error) {
		return s.rdb.SAdd(ctx, servicesKey(s.opts.Prefix, s.keys.namespace), s.keys.service).Result()
	})
	if err == nil {
		s.mu.Lock()
		s.registered = true
		s.mu.Unlock()
	}
	return err
}

// SetLoadState reports this pod's load (added to its link count when choosing the best pod).
func (s *ServerDriver) SetLoadState(ctx context.Context, load int) error {
	if err := checkInt("load", load, 0, maxInt); err != nil {
		return err
	}
	return s.send(ctx, "", strconv.Itoa(load))
}

// SetRoutingState reports Ready, DenyNewCall (no new users) or Shutdown (the operator evicts
// its users); an annotation on the pod may be stricter.
func (s *ServerDriver) SetRoutingState(ctx context.Context, state RoutingState) error {
	if state < RoutingReady || state > RoutingShutdown {
		return invalidf("state", "must be a RoutingState, got %d", int(state))
	}
	return s.send(ctx, strconv.Itoa(int(state)), "")
}

// SetLinkedPod makes the user's link point to this pod, persistently; it returns the pod the
// link pointed to before (found false: none).
func (s *ServerDriver) SetLinkedPod(ctx context.Context, uid string) (previous int, found bool, err error) {
	_, other, hasOther, err := s.persist(ctx, uid, false)
	if err != nil {
		return 0, false, err
	}
	if err := s.Register(ctx); err != nil { // after the write: a route without a table is refused first
		return 0, false, err
	}
	return other, hasOther, nil
}

// TrySetLinkedPod links the user to this pod persistently unless another pod holds a persistent
// link: (true, this pod) or (false, the holder).
func (s *ServerDriver) TrySetLinkedPod(ctx context.Context, uid string) (stored bool, holder int, err error) {
	stored, other, _, err := s.persist(ctx, uid, true)
	if err != nil {
		return false, 0, err
	}
	if err := s.Register(ctx); err != nil {
		return false, 0, err
	}
	if stored {
		return true, s.pod, nil
	}
	return false, other, nil
}

// RemoveLinkedPod removes the user's link (wherever it points), keeping a temporary one for
// keep (when positive) so a reconnecting user returns to the same pod. True if a link existed.
func (s *ServerDriver) RemoveLinkedPod(ctx context.Context, uid string, keep time.Duration) (bool, error) {
	if err := checkUID(uid); err != nil {
		return false, err
	}
	return s.unlink(ctx, uid, "", keep)
}

// RemoveLinkedPodWithID removes the user's link only if it points to pod (compare-and-delete),
// keeping a temporary one for keep as RemoveLinkedPod. True if removed.
func (s *ServerDriver) RemoveLinkedPodWithID(ctx context.Context, uid string, pod int, keep time.Duration) (bool, error) {
	if err := checkUID(uid); err != nil {
		return false, err
	}
	if err := checkPod("pod", pod); err != nil {
		return false, err
	}
	return s.unlink(ctx, uid, strconv.Itoa(pod), keep)
}

// HandOff moves the user's link from this pod to the best available other pod, in one atomic
// compare-and-swap (only if it still points here), and tells every gateway at once (they drop
// their cached link). The link keeps its kind: persistent stays persistent, temporary keeps its
// remaining TTL. It returns the new pod; moved is false if the user was not linked here (or
// moved meanwhile) or no other pod is available (the link then stays here).
//
// Push or persist the user's state before calling it (see HandOffOptions.Before): the user's
// next request goes to the new pod.
func (s *ServerDriver) HandOff(ctx context.Context, uid string) (pod int, moved bool, err error) {
	if err := checkUID(uid); err != nil {
		return 0, false, err
	}
	done, err := s.handOff(ctx, uid)
	if err != nil || !done.linked || done.pod < 0 {
		return 0, false, err
	}
	s.log.Debug("user handed off", "event", "handed_off", "uid", shown(uid, 80), "to", done.pod)
	return done.pod, true, nil
}

// LinkedUsers yields the users linked to this pod now (persistent and live temporary links),
// each once, read about 1,000 at a time; users linked or unlinked while iterating may or may not
// appear. A Redis fault is yielded as ("", err) and ends the sequence.
func (s *ServerDriver) LinkedUsers(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		stopped := false
		err := s.linkedUsers(ctx, func(uid string) bool {
			if !yield(uid, nil) {
				stopped = true
				return false
			}
			return true
		})
		if err != nil && !stopped {
			yield("", err)
		}
	}
}
