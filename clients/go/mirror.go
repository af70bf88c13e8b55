package statefulroute

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The route mirror, as gateway/mirror.py: every change to a route table is published on the
// namespace's change channel with the routable pods and the route's version, and applied at once
// and in publication order; each message also marks its route for a re-read, and one goroutine
// re-reads every marked route in one round trip (so a flood of messages about a route costs one
// read). Every followed view is re-read each RefreshInterval in case a message was lost, and a
// view older than MaxAge is never used: it is read again before answering, so a mirror cut off
// from Redis turns into ErrStoreUnavailable, not stale answers.
//
// Only routes whose table exists are followed (a name without one gets a view read now and not
// kept), and only while someone asks about them: a route nobody asked about for
// max(CacheTTL, 60 s) is forgotten, and beyond MaxRoutes the least recently asked about goes.

// viewAttempts: reads of one view before giving up; each is rejected only if a newer change
// arrived meanwhile (which keeps the age of the snapshot it amends).
const viewAttempts = 3

// readsPerTrip: routes re-read per round trip (one pipeline of snapshots).
const readsPerTrip = 256

// routeIdle: how long a route is followed after it was last asked about (or CacheTTL, if longer).
const routeIdle = 60 * time.Second

type routeName = [2]string // (namespace, service)

// mirrorHooks are what the mirror tells the client: a message (unlinked users, evicted pods),
// pods that stopped being routable (links cached to them are suspect), and a gap (anything
// cached may be stale: messages may have been lost, or Redis lost its data).
type mirrorHooks struct {
	change func(ns string, c change)
	lost   func(route routeName, pods map[int]bool)
	gap    func()
}

type routeMirror struct {
	rdb      redis.UniversalClient
	prefix   string
	channels map[string]string // channel → namespace
	interval time.Duration
	maxAge   time.Duration
	timeout  time.Duration
	keep     time.Duration
	max      int
	hooks    mirrorHooks
	log      *slog.Logger

	mu       sync.RWMutex
	views    map[routeName]*routeView
	followed map[routeName]time.Time // route → last asked about
	dirty    map[routeName]bool      // routes a message changed since their last read
	// published: when the oldest change a dirty route's next read covers was published (lag metrics)
	published map[routeName]time.Time
	lag       LagMetrics // nil unless Options.Metrics implements it
	tickets   uint64
	resync    bool
	reads     int // snapshots read (tests)

	pubsub     *redis.PubSub // the current subscription (under mu)
	wake       chan struct{} // a route was marked dirty, or a resync is due
	subscribed chan struct{} // closed once the channels are followed (replaced after a fault)
	cancel     context.CancelFunc
	done       sync.WaitGroup
}

func newRouteMirror(rdb redis.UniversalClient, opts Options, namespaces []string, hooks mirrorHooks) *routeMirror {
	m := &routeMirror{
		rdb: rdb, prefix: opts.Prefix, channels: map[string]string{}, interval: opts.RefreshInterval,
		maxAge: opts.MaxAge, timeout: opts.Timeout, keep: max(opts.CacheTTL, routeIdle), max: opts.MaxRoutes,
		hooks: hooks, log: opts.Logger,
		views: map[routeName]*routeView{}, followed: map[routeName]time.Time{}, dirty: map[routeName]bool{},
		published: map[routeName]time.Time{}, wake: make(chan struct{}, 1), subscribed: make(chan struct{}),
	}
	m.lag, _ = opts.Metrics.(LagMetrics)
	for _, ns := range namespaces {
		m.channels[changesChannel(opts.Prefix, ns)] = ns
	}
	return m
}

// start follows the change channels in the background until stop.
func (m *routeMirror) start() {
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.done.Add(2)
	go func() { defer m.done.Done(); m.listen(ctx) }()
	go func() { defer m.done.Done(); m.reread(ctx) }()
}

func (m *routeMirror) stop() {
	if m.cancel != nil {
		m.cancel()
		m.mu.Lock()
		if m.pubsub != nil { // a blocked read ends when its connection is closed
			go m.pubsub.Close()
		}
		m.mu.Unlock()
		m.done.Wait()
	}
}

func (m *routeMirror) nextTicket() uint64 { m.tickets++; return m.tickets }

// fresh is the held view while younger than MaxAge (partial ones only when !whole), else nil.
// It does not count as asking about the route: the cache's hit path calls it.
func (m *routeMirror) fresh(route routeName, now int64, whole bool) *routeView {
	m.mu.RLock()
	view := m.views[route]
	m.mu.RUnlock()
	if view != nil && view.until > now && !(whole && view.partial) {
		return view
	}
	return nil
}

// view is a trustworthy view of a route: the mirrored one while under MaxAge, else one read now.
// Never a view older than MaxAge, whatever its version. whole=false accepts a view whose
// routability is newer than the rest of its snapshot (enough for routability).
func (m *routeMirror) view(ctx context.Context, k routeKeys, whole bool) (*routeView, error) {
	route := routeName{k.namespace, k.service}
	m.mu.Lock()
	found := m.views[route]
	if found != nil {
		m.ask(route, time.Now())
	}
	m.mu.Unlock()
	if found != nil && found.validUntil.After(time.Now()) && !(whole && found.partial) {
		return found, nil
	}
	for range viewAttempts {
		views, err := m.read(ctx, []routeKeys{k})
		if err != nil {
			return nil, err
		}
		if v := views[0]; v.validUntil.After(time.Now()) && !(whole && v.partial) {
			return v, nil
		}
	}
	if err := callerErr(ctx); err != nil { // the reads outlasted the caller's deadline
		return nil, fmt.Errorf("statefulroute: route view: %w", err)
	}
	return nil, &StoreError{Op: "route view", Unavailable: true,
		Err: errors.New("no view of " + k.namespace + "/" + k.service + " younger than max_age could be read")}
}

// read reads the routes' snapshots in one round trip and installs them; the first fault is
// returned (typed), the routes read before it are installed.
func (m *routeMirror) read(ctx context.Context, routes []routeKeys) ([]*routeView, error) {
	m.mu.Lock()
	tickets := make([]uint64, len(routes))
	for i := range tickets {
		tickets[i] = m.nextTicket()
	}
	m.mu.Unlock()
	started := time.Now()
	type result struct {
		views []*routeView
		errs  []error
	}
	got, err := within(ctx, m.timeout, "route view", func(ctx context.Context) (result, error) {
		views, errs := readSnapshots(ctx, m.rdb, routes)
		if len(routes) == 1 && errs[0] != nil {
			return result{}, errs[0]
		}
		return result{views, errs}, nil
	})
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads += len(routes)
	out := make([]*routeView, len(routes))
	var first error
	for i, k := range routes {
		if got.errs[i] != nil {
			if first == nil {
				first = fault(ctx, "route view", got.errs[i])
			}
			continue
		}
		view := got.views[i]
		view.validUntil, view.ticket = started.Add(m.maxAge), tickets[i]
		view.until = mono(view.validUntil)
		out[i] = m.learnt(routeName{k.namespace, k.service}, view)
	}
	return out, first
}

// learnt installs a view read from Redis (under mu) and returns the view to answer from.
func (m *routeMirror) learnt(route routeName, fresh *routeView) *routeView {
	current := m.views[route]
	if !fresh.exists() {
		// No table: no view to keep. One that was kept is dropped (the route was deleted, or
		// Redis lost it), unless a message newer than this read arrived meanwhile.
		if current != nil && fresh.ticket > current.ticket {
			m.forget(route, true)
		}
		if current == nil || fresh.ticket > current.ticket {
			return fresh
		}
		return current
	}
	if current == nil {
		m.ask(route, time.Now())
	}
	return m.install(route, fresh, true)
}

// install keeps the newer of two views (a slow read must not undo a change applied meanwhile)
// and reports pods that stopped being routable. A read that began after the current view was
// learnt and finds the version gone back or the route born again (Redis lost its data, or the
// route was deleted and written again) is the truth, and every cached link is suspect.
func (m *routeMirror) install(route routeName, view *routeView, read bool) *routeView {
	current := m.views[route]
	if current != nil {
		if read && view.ticket > current.ticket && (view.version < current.version || view.born != current.born) {
			m.log.Warn("route data lost", "event", "route_data_lost", "namespace", route[0], "service", route[1],
				"version", current.version, "new_version", view.version, "born", current.born, "new_born", view.born,
				"action", "forget_cache")
			m.views[route] = view
			m.hooks.gap()
			return view
		}
		if view.version < current.version || (!read && view.version == current.version) {
			return current // older, or a message about what the current view already shows
		}
	}
	m.views[route] = view
	if current != nil {
		lost := map[int]bool{}
		for pod := range current.routable {
			if !view.routable[pod] {
				lost[pod] = true
			}
		}
		if len(lost) > 0 {
			m.hooks.lost(route, lost)
		}
	}
	return view
}

// ask: someone asked about the route; follow it for keep more (under mu). Beyond max routes,
// the least recently asked about is forgotten, with the links cached to its pods.
func (m *routeMirror) ask(route routeName, now time.Time) {
	_, known := m.followed[route]
	m.followed[route] = now
	if known || len(m.followed) <= m.max {
		return
	}
	var oldest routeName
	var at time.Time
	for r, t := range m.followed {
		if r != route && (at.IsZero() || t.Before(at)) {
			oldest, at = r, t
		}
	}
	m.forget(oldest, true)
}

// forget stops following a route (under mu): its view goes, and with links the links cached to
// its pods (a view read later could not tell whether Redis lost them meanwhile).
func (m *routeMirror) forget(route routeName, links bool) {
	view := m.views[route]
	delete(m.views, route)
	delete(m.followed, route)
	delete(m.dirty, route)
	if links && view != nil && len(view.routable) > 0 {
		m.hooks.lost(route, view.routable)
	}
}

// forgetIdle forgets the routes nobody asked about for keep (under mu). keep is at least the
// cache's TTL, and a link is cached only after its route was asked about, so none of their
// cached links is still live: no need to look for them.
func (m *routeMirror) forgetIdle(now time.Time) {
	for route, at := range m.followed {
		if now.Sub(at) >= m.keep {
			m.forget(route, false)
		}
	}
}

func (m *routeMirror) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// subscribedChan is closed once the channels are followed.
func (m *routeMirror) subscribedChan() chan struct{} {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.subscribed
}

// listen follows the change channels and applies messages as they come; it never waits for a
// read. A fault of the pub/sub connection (messages may have been lost) clears every view and
// cached link, and it subscribes again after RefreshInterval.
func (m *routeMirror) listen(ctx context.Context) {
	channels := make([]string, 0, len(m.channels))
	for ch := range m.channels {
		channels = append(channels, ch)
	}
	for ctx.Err() == nil {
		err := m.follow(ctx, channels)
		if ctx.Err() != nil || errors.Is(err, redis.ErrClosed) {
			return // stopped, or the Redis client was closed under the driver
		}
		m.log.Warn("mirror fault", "event", "mirror_fault", "error", RedactText(err.Error()), "action", "resync")
		m.mu.Lock()
		if isClosed(m.subscribed) {
			m.subscribed = make(chan struct{})
		}
		clear(m.views)
		clear(m.dirty)
		m.mu.Unlock()
		m.hooks.gap()
		select {
		case <-ctx.Done():
			return
		case <-time.After(m.interval):
		}
	}
}

func (m *routeMirror) follow(ctx context.Context, channels []string) error {
	pubsub := m.rdb.Subscribe(ctx)
	m.mu.Lock()
	m.pubsub = pubsub
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.pubsub = nil
		m.mu.Unlock()
		// Asynchronously: Close waits for a dial in progress (up to the dial timeout).
		go pubsub.Close()
	}()
	if _, err := within(ctx, m.timeout, "subscribe", func(ctx context.Context) (any, error) {
		if err := pubsub.Subscribe(ctx, channels...); err != nil {
			return nil, err
		}
		for range channels { // wait for every confirmation
			if _, err := pubsub.Receive(ctx); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}); err != nil {
		return err
	}
	// Anything cached before this subscription may have missed messages; re-read every view.
	m.hooks.gap()
	m.mu.Lock()
	m.resync = true
	close(m.subscribed)
	m.mu.Unlock()
	m.poke()
	for {
		msg, err := pubsub.ReceiveTimeout(ctx, m.interval)
		if err != nil {
			var ne net.Error
			if ctx.Err() == nil && errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err // go-redis reconnects on the next call; messages sent meanwhile are lost
		}
		if message, ok := msg.(*redis.Message); ok {
			m.apply(message)
		}
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// apply applies one message: routability at once and in publication order, and marks the route
// for a re-read (superseded messages coalesce: one read, however many arrive).
func (m *routeMirror) apply(message *redis.Message) {
	ns, ok := m.channels[message.Channel]
	if !ok {
		return
	}
	c, ok := parseChange(message.Payload)
	if !ok {
		return
	}
	m.hooks.change(ns, c)
	if c.kind != changeTable {
		return
	}
	route := routeName{ns, c.service}
	m.mu.Lock()
	defer m.mu.Unlock()
	view := m.views[route]
	if view == nil {
		return // not followed: a lookup reads it afresh
	}
	if c.routable != nil && c.hasVersion {
		m.install(route, view.withRoutability(c.routable, c.version, m.nextTicket()), false)
		if m.lag != nil && !c.at.IsZero() {
			m.lag.ChangeLag(time.Since(c.at).Seconds())
		}
	}
	if _, pending := m.published[route]; !pending && !c.at.IsZero() {
		m.published[route] = c.at
	}
	m.dirty[route] = true
	m.poke()
}

// reread re-reads the routes messages changed, as soon as any did, all in one round trip, and
// every followed route each RefreshInterval. Routes nobody asked about for keep are forgotten.
// A failed read is logged and left to the next: views only age, and none is used past MaxAge.
func (m *routeMirror) reread(ctx context.Context) {
	every := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.wake:
		case <-timer.C:
		}
		now := time.Now()
		m.mu.Lock()
		var routes []routeName
		if m.resync || !now.Before(every) {
			m.resync = false
			m.forgetIdle(now)
			for route := range m.followed {
				routes = append(routes, route)
			}
			every = now.Add(m.interval)
		} else {
			for route := range m.dirty {
				routes = append(routes, route)
			}
		}
		clear(m.dirty)
		published := m.published
		m.published = map[routeName]time.Time{}
		m.mu.Unlock()
		for start := 0; start < len(routes); start += readsPerTrip {
			part := routes[start:min(start+readsPerTrip, len(routes))]
			keys := make([]routeKeys, len(part))
			for i, r := range part {
				keys[i] = newRouteKeys(m.prefix, r[0], r[1])
			}
			if _, err := m.read(ctx, keys); errors.Is(err, redis.ErrClosed) {
				return
			} else if err != nil && ctx.Err() == nil {
				m.log.Warn("mirror read failed", "event", "mirror_read_failed", "error", err.Error(), "routes", len(part))
			} else if err == nil && m.lag != nil {
				for _, r := range part {
					if at, ok := published[r]; ok {
						m.lag.ViewLag(time.Since(at).Seconds())
					}
				}
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(max(0, time.Until(every)))
	}
}

// -- messages (store/changes.py) ----------------------------------------------------------------

type changeKind byte

const (
	changeTable    changeKind = 't' // the route table changed
	changeUnlinked changeKind = 'u' // one user's link was removed or moved
	changeEvicted  changeKind = 'e' // every link to one pod was removed
)

// change is a decoded message: "t|svc[|routable,...|ms|version]", "u|svc|uid", "e|svc|pod".
type change struct {
	kind       changeKind
	service    string
	subject    string       // the uid (u), the pod (e)
	at         time.Time    // t: when it was published (Redis clock; zero: not sent)
	routable   map[int]bool // t: the routable pods right after the change (nil: not sent)
	version    int64
	hasVersion bool
}

// parseChange decodes a message; false for anything this version does not understand.
func parseChange(data string) (change, bool) {
	tag, rest, _ := strings.Cut(data, "|")
	service, subject, bar := strings.Cut(rest, "|")
	if len(tag) != 1 || service == "" {
		return change{}, false
	}
	c := change{kind: changeKind(tag[0]), service: service}
	switch c.kind {
	case changeUnlinked, changeEvicted:
		c.subject = subject
		return c, true
	case changeTable:
	default:
		return change{}, false
	}
	if !bar {
		return c, true
	}
	pods, rest, _ := strings.Cut(subject, "|")
	stamp, version, _ := strings.Cut(rest, "|")
	var at time.Time
	if stamp != "" {
		ms, err := strconv.ParseInt(stamp, 10, 64)
		if err != nil {
			return c, true
		}
		at = time.UnixMilli(ms)
	}
	routable := map[int]bool{}
	for _, p := range strings.Split(pods, ",") {
		if p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return c, true // as Python: a TABLE change without its details
		}
		routable[n] = true
	}
	if version != "" {
		n, err := strconv.ParseInt(version, 10, 64)
		if err != nil {
			return c, true
		}
		c.version, c.hasVersion = n, true
	}
	c.routable, c.at = routable, at
	return c, true
}

// readsCount is how many snapshots the mirror read (tests).
func (m *routeMirror) readsCount() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.reads
}

// following reports whether the mirror follows the route (tests).
func (m *routeMirror) following(ns, service string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.followed[routeName{ns, service}]
	return ok
}
