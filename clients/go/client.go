package statefulroute

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Layout is the version of the Redis layout this release reads and writes (lua/include/layout.lua,
// Python's core.constants.LAYOUT). A route written by a newer layout is refused with
// *LayoutTooNewError by every operation that reads Redis, before anything is read or written.
const Layout = 2

// DefaultLinkTTL is how long a temporary link lives when the route's policy sets none.
const DefaultLinkTTL = 300 * time.Second

// batchSize is the number of users per MGET (store/links.py BATCH).
const batchSize = 1000

// Options configure a ClientDriver. Zero values take the defaults noted.
type Options struct {
	// Namespaces this client serves (required): any other namespace is refused with
	// ErrInvalidInput, as Python's ClientDriver(namespace=...) does.
	Namespaces []string
	// Prefix of every key (default "sr").
	Prefix string
	// LinkTTL: the life of a temporary link on routes whose policy sets none (default 300 s).
	LinkTTL time.Duration
	// CacheTTL: the longest a link stays cached (default LinkTTL - 60 s, or LinkTTL/2 when
	// LinkTTL is 120 s or less). Never more than LinkTTL.
	CacheTTL time.Duration
	// CacheSize: the most links cached (default 100,000).
	CacheSize int
	// Timeout of each Redis call (default 1 s); a batch gets Timeout more per further 1,000
	// uids. Past it a call fails with ErrStoreUnavailable; a caller's deadline that comes
	// first ends it with context.DeadlineExceeded instead (see the package documentation).
	Timeout time.Duration
	// MaxAge: a route view older than this is never used, whatever the change channel said: it
	// is read again first (default 1 s, at most 1 s: the consistency bound). Changes arrive on
	// the change channel at once; this bounds staleness when messages are lost.
	MaxAge time.Duration
	// RefreshInterval: every followed route view is re-read this often, in case a change
	// message was lost (default 500 ms; shorter than MaxAge).
	RefreshInterval time.Duration
	// MaxRoutes: the most routes the mirror follows at once (default 10,000); beyond it the
	// least recently asked about is forgotten. A route is also forgotten once nobody asked about
	// it for max(CacheTTL, 60 s).
	MaxRoutes int
	// Logger for warnings (corrupt link values); default slog.Default().
	Logger *slog.Logger
	// Metrics, when set, is told of every ComputeLinkedPod cache hit and miss and the time of
	// every link-store round trip (prommetrics.New: the Python gateway's Prometheus series).
	Metrics ClientMetrics
}

// ClientDriver answers "which pod does this user use?" for a gateway: a local cache, a view of
// each route read from Redis, and one Lua call that keeps, places or moves a link atomically.
// Safe for concurrent use. It does not own the Redis client.
type ClientDriver struct {
	rdb        redis.UniversalClient
	opts       Options
	namespaces map[string]bool
	cache      *linkCache
	mirror     *routeMirror
	log        *slog.Logger

	servicesMu sync.Mutex
	services   map[[2]string]bool // services this client registered (SADD), see GetLinkService
}

// NewClientDriver returns a ClientDriver on rdb (see Connect for one from a URL), checking
// opts as the Python client checks its arguments. It starts following the namespaces' change
// channels (the route mirror) and returns once it does, or after Options.Timeout. Call Close
// when done.
func NewClientDriver(rdb redis.UniversalClient, opts Options) (*ClientDriver, error) {
	if rdb == nil {
		return nil, invalid("redis", "must be a client")
	}
	if len(opts.Namespaces) == 0 {
		return nil, invalid("namespace", "name at least one namespace")
	}
	names := map[string]bool{}
	for _, ns := range opts.Namespaces {
		if err := checkDNSLabel("namespace", ns); err != nil {
			return nil, err
		}
		names[ns] = true
	}
	if opts.Prefix == "" {
		opts.Prefix = "sr"
	}
	if err := checkPrefix(opts.Prefix); err != nil {
		return nil, err
	}
	if opts.LinkTTL == 0 {
		opts.LinkTTL = DefaultLinkTTL
	}
	if err := checkDuration("link_ttl", opts.LinkTTL, time.Second); err != nil {
		return nil, err
	}
	if opts.CacheTTL == 0 {
		opts.CacheTTL = opts.LinkTTL / 2
		if opts.LinkTTL > 120*time.Second {
			opts.CacheTTL = opts.LinkTTL - 60*time.Second
		}
	}
	if err := checkDuration("cache_ttl", opts.CacheTTL, time.Millisecond); err != nil {
		return nil, err
	}
	if opts.CacheTTL > opts.LinkTTL {
		return nil, invalidf("cache_ttl", "must not exceed link_ttl (%gs), got %gs", opts.LinkTTL.Seconds(), opts.CacheTTL.Seconds())
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = 100_000
	}
	if err := checkInt("cache_size", opts.CacheSize, 1, maxInt); err != nil {
		return nil, err
	}
	if opts.Timeout == 0 {
		opts.Timeout = time.Second
	}
	if err := checkDuration("timeout", opts.Timeout, time.Millisecond); err != nil {
		return nil, err
	}
	if opts.MaxAge == 0 {
		opts.MaxAge = time.Second
	}
	if err := checkDuration("max_age", opts.MaxAge, 20*time.Millisecond); err != nil {
		return nil, err
	}
	if opts.MaxAge > time.Second {
		return nil, invalidf("max_age", "must be at most 1s (the consistency bound), got %gs", opts.MaxAge.Seconds())
	}
	if opts.RefreshInterval == 0 {
		opts.RefreshInterval = min(500*time.Millisecond, opts.MaxAge/2)
	}
	if err := checkDuration("refresh_interval", opts.RefreshInterval, 10*time.Millisecond); err != nil {
		return nil, err
	}
	if opts.RefreshInterval >= opts.MaxAge {
		return nil, invalidf("refresh_interval", "must be shorter than max_age (%gs), got %gs",
			opts.MaxAge.Seconds(), opts.RefreshInterval.Seconds())
	}
	if opts.MaxRoutes == 0 {
		opts.MaxRoutes = 10_000
	}
	if err := checkInt("max_routes", opts.MaxRoutes, 1, maxInt); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	d := &ClientDriver{
		rdb:        rdb,
		opts:       opts,
		namespaces: names,
		cache:      newLinkCache(opts.CacheSize, opts.CacheTTL),
		log:        opts.Logger,
		services:   map[[2]string]bool{},
	}
	served := make([]string, 0, len(names))
	for ns := range names {
		served = append(served, ns)
	}
	d.mirror = newRouteMirror(rdb, opts, served, mirrorHooks{change: d.applyChange, lost: d.forgetPods, gap: d.forgetAll})
	d.mirror.start()
	// Start answering once the change channels are followed (or after Timeout if Redis is down:
	// calls then fail with ErrStoreUnavailable until it is back), as Python's `async with`.
	// Subscribing clears the cache (anything cached before may have missed messages), so a link
	// cached by a first call is not dropped a moment later.
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	_ = d.Subscribed(ctx)
	return d, nil
}

// Close stops following the change channels and releases the pub/sub connection. It does not
// close the Redis client. The driver must not be used after Close.
func (d *ClientDriver) Close() error {
	d.mirror.stop()
	return nil
}

// Subscribed waits until the driver follows its namespaces' change channels (a driver answers
// before that too, from views read on demand; this is for tests and start-up probes).
func (d *ClientDriver) Subscribed(ctx context.Context) error {
	select {
	case <-d.mirror.subscribedChan():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("statefulroute: subscribe: %w", ctx.Err())
	}
}

// -- links ------------------------------------------------------------------------------------

// ComputeLinkedPod returns the pod this user must use now: the cached link while a fresh route
// view calls its pod routable, else the stored link if its pod is routable, else one Lua call
// places the user on the best available pod (or moves a link off an unroutable pod:
// compare-and-swap) and stores the link.
//
// Errors: *NoAvailablePodError when the user has no routable link and no pod is available;
// *PodPendingError (also ErrNoAvailablePod: retry soon) while a user evicted early in a
// rolling update waits for a pod of the new revision.
func (d *ClientDriver) ComputeLinkedPod(ctx context.Context, namespace, uid, serviceName string) (int, error) {
	key := cacheKey{namespace, serviceName, uid}
	if pod, ok := d.cachedRoutable(key); ok {
		if d.opts.Metrics != nil {
			d.opts.Metrics.CacheHit()
		}
		return pod, nil
	}
	if d.opts.Metrics != nil {
		d.opts.Metrics.CacheMiss()
	}
	k, err := d.route(namespace, serviceName)
	if err != nil {
		return 0, err
	}
	if err := checkUID(uid); err != nil {
		return 0, err
	}
	epoch, sent := d.cache.currentEpoch(), time.Now() // before the request: see cachePut
	if _, err := d.view(ctx, k, false); err != nil {
		return 0, err
	}
	reply, err := observed(d.opts.Metrics, ctx, d.opts.Timeout, "place", func(ctx context.Context) (any, error) {
		return scriptPlace.Run(ctx, d.rdb, []string{k.link(uid)}, k.base, ms(d.opts.LinkTTL), "").Result()
	})
	if err == redis.Nil {
		d.cache.drop(key)
		return 0, &NoAvailablePodError{Namespace: namespace, Service: serviceName}
	}
	if err != nil {
		return 0, err
	}
	v, err := ints("place", reply, 4)
	if err != nil {
		return 0, err
	}
	pod, ttl, outcome, replaced := v[0], v[1], v[2], v[3]
	if pod < 0 {
		d.cache.drop(key)
		return 0, &PodPendingError{Namespace: namespace, Service: serviceName, WaitAtMost: time.Duration(ttl) * time.Millisecond}
	}
	if replaced == 1 {
		d.log.Warn("corrupt link replaced", "event", "corrupt_link_replaced", "namespace", namespace,
			"service", serviceName, "uid", shown(uid, 80), "pod", pod)
	}
	if outcome == 2 { // rebound: other gateways may cache the old link
		if err := d.publish(ctx, k, unlinkedMessage(serviceName, uid)); err != nil {
			return 0, err
		}
	}
	if outcome != 0 {
		if err := d.addService(ctx, k); err != nil {
			return 0, err
		}
	}
	d.cachePut(epoch, key, int(pod), remaining(ttl), sent)
	return int(pod), nil
}

// GetLinkedPod returns the user's link (the cache while a fresh view calls its pod routable,
// else Redis); found is false when the user has none.
func (d *ClientDriver) GetLinkedPod(ctx context.Context, namespace, uid, serviceName string) (pod int, found bool, err error) {
	if pod, ok := d.cachedRoutable(cacheKey{namespace, serviceName, uid}); ok {
		return pod, true, nil
	}
	return d.GetLinkedPodNotCache(ctx, namespace, uid, serviceName)
}

// GetLinkedPodInCacheOrIfPersist returns the cached link (as GetLinkedPod), else the stored
// link only if it is persistent; found is false otherwise.
func (d *ClientDriver) GetLinkedPodInCacheOrIfPersist(ctx context.Context, namespace, uid, serviceName string) (pod int, found bool, err error) {
	key := cacheKey{namespace, serviceName, uid}
	if pod, ok := d.cachedRoutable(key); ok {
		return pod, true, nil
	}
	link, err := d.read(ctx, key, true)
	if err != nil || link == nil || !link.persistent {
		return 0, false, err
	}
	return link.pod, true, nil
}

// GetLinkedPodNotCache returns the stored link, read from Redis (the cache is refreshed with
// it); found is false when the user has none. A stored value that is not a link is ErrStore.
func (d *ClientDriver) GetLinkedPodNotCache(ctx context.Context, namespace, uid, serviceName string) (pod int, found bool, err error) {
	key := cacheKey{namespace, serviceName, uid}
	link, err := d.read(ctx, key, false)
	if err != nil {
		return 0, false, err
	}
	if link == nil {
		d.cache.drop(key)
		return 0, false, nil
	}
	return link.pod, true, nil
}

// GetLinkService returns every service of namespace this user is linked to: {service: pod}.
// A stored value that is not a link is skipped (and logged): one corrupt key does not hide
// the others.
func (d *ClientDriver) GetLinkService(ctx context.Context, namespace, uid string) (map[string]int, error) {
	if err := d.namespace(namespace); err != nil {
		return nil, err
	}
	if err := checkUID(uid); err != nil {
		return nil, err
	}
	services, err := observed(d.opts.Metrics, ctx, d.opts.Timeout, "link services", func(ctx context.Context) ([]string, error) {
		return d.rdb.SMembers(ctx, servicesKey(d.opts.Prefix, namespace)).Result()
	})
	if err != nil {
		return nil, err
	}
	found := map[string]int{}
	if len(services) == 0 {
		return found, nil
	}
	cmds, err := observed(d.opts.Metrics, ctx, d.opts.Timeout, "link services", func(ctx context.Context) ([]*redis.StringCmd, error) {
		pipe := d.rdb.Pipeline()
		cmds := make([]*redis.StringCmd, 2*len(services))
		for i, service := range services {
			k := newRouteKeys(d.opts.Prefix, namespace, service)
			cmds[2*i] = pipe.HGet(ctx, k.config, "layout")
			cmds[2*i+1] = pipe.Get(ctx, k.link(uid))
		}
		// A missing link (redis.Nil) or a key of another type (WRONGTYPE) fails its own GET only.
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil && !isReplyError(err) {
			return nil, err
		}
		return cmds, nil
	})
	if err != nil {
		return nil, err
	}
	for i := range services {
		if err := checkLayout("link services", cmds[2*i]); err != nil {
			return nil, err
		}
	}
	for i, service := range services {
		raw, err := cmds[2*i+1].Result()
		if err == redis.Nil {
			continue
		}
		if err != nil && !isReplyError(err) {
			return nil, fault(ctx, "link services", err)
		}
		if pod, _, ok := decodeLink(raw); ok && err == nil {
			found[service] = pod
			continue
		}
		d.skipped(namespace, service, uid, raw)
	}
	return found, nil
}

// BatchGetLinkedPod returns the links of many users grouped {pod: [uid, ...]} (unlinked users
// are absent), in one round trip however many users (MGETs of 1,000 keys, pipelined). Any
// Redis fault is returned rather than dropping users; a stored value that is not a link is
// skipped (and logged).
func (d *ClientDriver) BatchGetLinkedPod(ctx context.Context, namespace string, uids []string, serviceName string) (map[int][]string, error) {
	k, err := d.route(namespace, serviceName)
	if err != nil {
		return nil, err
	}
	for _, uid := range uids {
		if err := checkUID(uid); err != nil {
			return nil, err
		}
	}
	grouped := map[int][]string{}
	if len(uids) == 0 {
		return grouped, nil
	}
	deadline := d.opts.Timeout * time.Duration(1+len(uids)/batchSize)
	var layout *redis.StringCmd
	cmds, err := observed(d.opts.Metrics, ctx, deadline, "batch lookup", func(ctx context.Context) ([]*redis.SliceCmd, error) {
		pipe := d.rdb.Pipeline()
		layout = pipe.HGet(ctx, k.config, "layout")
		var cmds []*redis.SliceCmd
		for start := 0; start < len(uids); start += batchSize {
			batch := uids[start:min(start+batchSize, len(uids))]
			keys := make([]string, len(batch))
			for i, uid := range batch {
				keys[i] = k.link(uid)
			}
			cmds = append(cmds, pipe.MGet(ctx, keys...))
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			return nil, err
		}
		return cmds, nil
	})
	if err != nil {
		return nil, err
	}
	if err := checkLayout("batch lookup", layout); err != nil {
		return nil, err
	}
	i := 0
	for _, cmd := range cmds {
		for _, raw := range cmd.Val() {
			uid := uids[i]
			i++
			if raw == nil {
				continue
			}
			if text, ok := raw.(string); ok {
				if pod, _, ok := decodeLink(text); ok {
					grouped[pod] = append(grouped[pod], uid)
					continue
				}
			}
			d.skipped(namespace, serviceName, uid, raw)
		}
	}
	return grouped, nil
}

// SetLinkedPodIfAbsent stores a temporary link to pod only if the user has none to a routable
// pod (a link to an unroutable pod is moved to pod); it returns the pod linked after the call.
// *NoAvailablePodError, writing nothing, when the route has no table, or (with HasPod) when
// pod is not a routable pod of it.
func (d *ClientDriver) SetLinkedPodIfAbsent(ctx context.Context, namespace, uid, serviceName string, pod int) (int, error) {
	k, err := d.route(namespace, serviceName)
	if err != nil {
		return 0, err
	}
	if err := checkUID(uid); err != nil {
		return 0, err
	}
	if err := checkPod("pod", pod); err != nil {
		return 0, err
	}
	epoch, sent := d.cache.currentEpoch(), time.Now()
	if _, err := d.view(ctx, k, false); err != nil {
		return 0, err
	}
	reply, err := observed(d.opts.Metrics, ctx, d.opts.Timeout, "link if absent", func(ctx context.Context) (any, error) {
		keys := append([]string{k.link(uid)}, k.route()...)
		return scriptIfAbsent.Run(ctx, d.rdb, keys, k.podLinks, uid, pod, ms(d.opts.LinkTTL)).Result()
	})
	if err == redis.Nil {
		return 0, &NoAvailablePodError{Namespace: namespace, Service: serviceName}
	}
	if err != nil {
		return 0, err
	}
	if v, ok := reply.([]any); ok && len(v) == 1 {
		return 0, &NoAvailablePodError{Namespace: namespace, Service: serviceName, Pod: pod, HasPod: true}
	}
	v, err := ints("link if absent", reply, 3)
	if err != nil {
		return 0, err
	}
	if v[2] == 1 { // moved off an unroutable pod: other gateways may cache the old link
		if err := d.publish(ctx, k, unlinkedMessage(serviceName, uid)); err != nil {
			return 0, err
		}
	}
	if err := d.addService(ctx, k); err != nil {
		return 0, err
	}
	d.cachePut(epoch, cacheKey{namespace, serviceName, uid}, int(v[0]), remaining(v[1]), sent)
	return int(v[0]), nil
}

// -- the local cache alone (no I/O) ------------------------------------------------------------

// GetLinkedInCache returns the cached link; found is false when none is cached.
func (d *ClientDriver) GetLinkedInCache(ctx context.Context, namespace, uid, serviceName string) (pod int, found bool, err error) {
	key := cacheKey{namespace, serviceName, uid}
	if pod, ok := d.cache.get(key, time.Now()); ok {
		return pod, true, nil
	}
	if _, err := d.route(namespace, serviceName); err != nil {
		return 0, false, err
	}
	return 0, false, checkUID(uid)
}

// SetCache caches a link for the cache's lifetime (CacheTTL).
func (d *ClientDriver) SetCache(ctx context.Context, namespace, uid, serviceName string, pod int) error {
	if _, err := d.route(namespace, serviceName); err != nil {
		return err
	}
	if err := checkUID(uid); err != nil {
		return err
	}
	if err := checkPod("pod", pod); err != nil {
		return err
	}
	now := time.Now()
	d.cache.put(cacheKey{namespace, serviceName, uid}, pod, -1, now, now)
	return nil
}

// CacheExpired forgets the cached link of a user.
func (d *ClientDriver) CacheExpired(ctx context.Context, namespace, uid, serviceName string) error {
	if _, err := d.route(namespace, serviceName); err != nil {
		return err
	}
	if err := checkUID(uid); err != nil {
		return err
	}
	d.cache.drop(cacheKey{namespace, serviceName, uid})
	return nil
}

// -- the route view ------------------------------------------------------------------------

// IsPodRoutable reports whether existing users may keep using pod index (routability as the
// change channel announced it, at once).
func (d *ClientDriver) IsPodRoutable(ctx context.Context, namespace, serviceName string, index int) (bool, error) {
	view, err := d.routeView(ctx, namespace, serviceName, index, false)
	return err == nil && view.routable[index], err
}

// IsPodAvailable reports whether new users may be placed on pod index.
func (d *ClientDriver) IsPodAvailable(ctx context.Context, namespace, serviceName string, index int) (bool, error) {
	view, err := d.routeView(ctx, namespace, serviceName, index, true)
	return err == nil && view.available[index], err
}

// RoutablePods returns the indices of the routable pods, ascending.
func (d *ClientDriver) RoutablePods(ctx context.Context, namespace, serviceName string) ([]int, error) {
	view, err := d.routeView(ctx, namespace, serviceName, 0, false)
	if err != nil {
		return nil, err
	}
	return view.routableSorted(), nil
}

// BestPod returns the pod a new user would be placed on now; found is false when none is.
func (d *ClientDriver) BestPod(ctx context.Context, namespace, serviceName string) (pod int, found bool, err error) {
	view, err := d.routeView(ctx, namespace, serviceName, 0, true)
	if err != nil || view.best < 0 {
		return 0, false, err
	}
	return view.best, true, nil
}

// -- internals ------------------------------------------------------------------------------

func (d *ClientDriver) routeView(ctx context.Context, namespace, serviceName string, index int, whole bool) (*routeView, error) {
	if err := checkPod("index", index); err != nil {
		return nil, err
	}
	k, err := d.route(namespace, serviceName)
	if err != nil {
		return nil, err
	}
	return d.view(ctx, k, whole)
}

func (d *ClientDriver) namespace(ns string) error {
	if err := checkDNSLabel("namespace", ns); err != nil {
		return err
	}
	if !d.namespaces[ns] {
		return invalidf("namespace", "%q is not served by this client", ns)
	}
	return nil
}

func (d *ClientDriver) route(namespace, serviceName string) (routeKeys, error) {
	if err := d.namespace(namespace); err != nil {
		return routeKeys{}, err
	}
	if err := checkDNSLabel("service", serviceName); err != nil {
		return routeKeys{}, err
	}
	return newRouteKeys(d.opts.Prefix, namespace, serviceName), nil
}

// cachedRoutable is the cached link while a fresh view calls its pod routable. A hit proves
// the arguments were valid when cached.
func (d *ClientDriver) cachedRoutable(key cacheKey) (int, bool) {
	now := monoNow()
	pod, ok := d.cache.getMono(key, now)
	if !ok {
		return 0, false
	}
	view := d.mirror.fresh(routeName{key.namespace, key.service}, now, false)
	if view == nil || !view.routable[pod] {
		return 0, false
	}
	return pod, true
}

// cachePut caches a link read from Redis for at most what the stored link has left (remaining,
// negative: persistent), counted from sent, the clock before the request (the TTL was read at
// some moment after that, so the entry never outlives the link, however long the reply took),
// only if no invalidation arrived since epoch was read (it may concern this very link), and
// only while a fresh view calls its pod routable: a link to a pod being evicted is not worth
// keeping.
func (d *ClientDriver) cachePut(epoch uint64, key cacheKey, pod int, remaining time.Duration, sent time.Time) {
	now := time.Now()
	view := d.mirror.fresh(routeName{key.namespace, key.service}, mono(now), false)
	if view == nil || !view.routable[pod] {
		d.cache.drop(key)
		return
	}
	d.cache.putIf(epoch, key, pod, remaining, sent, now)
}

// applyChange acts on a message: an unlinked user's cached link goes, and so do the links
// cached to an evicted pod.
func (d *ClientDriver) applyChange(ns string, c change) {
	switch c.kind {
	case changeUnlinked:
		d.cache.invalidate(cacheKey{ns, c.service, c.subject})
	case changeEvicted:
		if pod, err := strconv.Atoi(c.subject); err == nil && pod >= 0 {
			d.cache.dropPods(ns, c.service, map[int]bool{pod: true})
		}
	}
}

// forgetPods drops the links cached to pods that stopped being routable: they may have moved.
func (d *ClientDriver) forgetPods(route routeName, pods map[int]bool) {
	d.cache.dropPods(route[0], route[1], pods)
}

// forgetAll drops every cached link after a gap (messages may have been lost), and the
// services registered: a gap may be a Redis restarted empty, so they are registered again at
// the next placement.
func (d *ClientDriver) forgetAll() {
	d.cache.clear()
	d.servicesMu.Lock()
	clear(d.services)
	d.servicesMu.Unlock()
}

type link struct {
	pod        int
	persistent bool
}

// read is the stored link (nil: none), read with its TTL in one atomic step, and cached (only a
// persistent one with persistentOnly, as GetLinkedPodInCacheOrIfPersist caches, like Python).
func (d *ClientDriver) read(ctx context.Context, key cacheKey, persistentOnly bool) (*link, error) {
	k, err := d.route(key.namespace, key.service)
	if err != nil {
		return nil, err
	}
	if err := checkUID(key.uid); err != nil {
		return nil, err
	}
	epoch, sent := d.cache.currentEpoch(), time.Now()
	if _, err := d.view(ctx, k, false); err != nil {
		return nil, err
	}
	reply, err := observed(d.opts.Metrics, ctx, d.opts.Timeout, "read", func(ctx context.Context) (any, error) {
		return scriptRead.Run(ctx, d.rdb, []string{k.link(key.uid), k.config}).Result()
	})
	if err != nil {
		return nil, err
	}
	items, ok := reply.([]any)
	if !ok || len(items) != 2 {
		return nil, corrupt("read", "unexpected reply %T", reply)
	}
	if items[0] == nil {
		return nil, nil
	}
	raw, _ := items[0].(string)
	ttl, _ := items[1].(int64)
	pod, persistent, ok := decodeLink(raw)
	if !ok {
		return nil, corrupt("read", "corrupt link value %q", shown(raw, 40))
	}
	if persistent || !persistentOnly {
		d.cachePut(epoch, key, pod, remaining(ttl), sent)
	}
	return &link{pod, persistent}, nil
}

func (d *ClientDriver) publish(ctx context.Context, k routeKeys, message string) error {
	_, err := observed(d.opts.Metrics, ctx, d.opts.Timeout, "announce", func(ctx context.Context) (int64, error) {
		return d.rdb.Publish(ctx, k.channel, message).Result()
	})
	return err
}

// addService records the service in its namespace's set (once per driver; SADD is idempotent).
func (d *ClientDriver) addService(ctx context.Context, k routeKeys) error {
	name := [2]string{k.namespace, k.service}
	d.servicesMu.Lock()
	done := d.services[name]
	d.servicesMu.Unlock()
	if done {
		return nil
	}
	_, err := observed(d.opts.Metrics, ctx, d.opts.Timeout, "register service", func(ctx context.Context) (int64, error) {
		return d.rdb.SAdd(ctx, servicesKey(d.opts.Prefix, k.namespace), k.service).Result()
	})
	if err == nil {
		d.servicesMu.Lock()
		d.services[name] = true
		d.servicesMu.Unlock()
	}
	return err
}

func (d *ClientDriver) skipped(namespace, service, uid string, raw any) {
	shownValue := ""
	if s, ok := raw.(string); ok {
		shownValue = shown(s, 40)
	}
	d.log.Warn("corrupt link skipped", "event", "corrupt_link_skipped", "namespace", namespace,
		"service", service, "uid", shown(uid, 80), "value", shownValue)
}

// decodeLink reads a link value: "3" is pod 3, temporary; "3p" pod 3, persistent.
func decodeLink(raw string) (pod int, persistent bool, ok bool) {
	digits, persistent := strings.CutSuffix(raw, "p")
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, false, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil {
		return 0, false, false
	}
	return n, persistent, true
}

// checkLayout is *LayoutTooNewError when a route's config (its 'layout' field, read in the same
// round trip as the plain reads it guards) names a layout newer than Layout. The scripts check
// it themselves; this is for the plain GET/MGET reads, which would misread a newer layout.
func checkLayout(op string, cmd *redis.StringCmd) error {
	raw, err := cmd.Result()
	if err != nil { // absent (an unmarked or missing route), or not a hash: nothing to refuse
		return nil
	}
	if found, err := strconv.Atoi(raw); err == nil && found > Layout {
		return &LayoutTooNewError{Op: op, Found: found, Known: Layout}
	}
	return nil
}

// isReplyError: Redis refused one command of a pipeline (WRONGTYPE...), not a fault of the link.
func isReplyError(err error) bool {
	var reply redis.Error
	return err != nil && err != redis.Nil && !strings.HasPrefix(err.Error(), "redis: ") &&
		errors.As(err, &reply) && strings.HasPrefix(reply.Error(), "WRONGTYPE")
}

func ints(op string, reply any, n int) ([]int64, error) {
	items, ok := reply.([]any)
	if !ok || len(items) != n {
		return nil, corrupt(op, "unexpected reply %v", reply)
	}
	out := make([]int64, n)
	for i, item := range items {
		if out[i], ok = item.(int64); !ok {
			return nil, corrupt(op, "unexpected reply field %v", item)
		}
	}
	return out, nil
}

// ms is a duration in whole milliseconds, at least 1 (links.py _ms).
func ms(d time.Duration) int64 { return max(1, d.Milliseconds()) }

// remaining is a PTTL reply as a duration; negative (persistent, no TTL) stays negative.
func remaining(pttl int64) time.Duration {
	if pttl < 0 {
		return -1
	}
	return time.Duration(pttl) * time.Millisecond
}
