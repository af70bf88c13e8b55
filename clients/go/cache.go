package statefulroute

import (
	"container/list"
	"sync"
	"time"
)

// cacheKey is (namespace, service, uid): a struct, not a joined string, so ("a:b", "c") and
// ("a", "b:c") never collide (a defect of the original driver).
type cacheKey struct{ namespace, service, uid string }

type cacheEntry struct {
	pod   int
	until int64 // the deadline on the monotonic clock (mono)
	order *list.Element
}

// monoBase anchors mono: time.Since of a time with a monotonic reading reads the monotonic
// clock alone, half the cost of time.Now (which reads the wall clock too). The cache-hit path
// compares deadlines on it.
var monoBase = time.Now()

// monoNow is the monotonic clock, in nanoseconds since monoBase.
func monoNow() int64 { return int64(time.Since(monoBase)) }

// mono is t on the monotonic clock (t from time.Now, or derived from it by Add).
func mono(t time.Time) int64 { return int64(t.Sub(monoBase)) }

// linkCache holds links for at most ttl each, at most size of them (the oldest written goes
// first), as gateway/cache.py: an entry never outlives the stored link (its remaining TTL,
// counted from before the request that read it). Safe for concurrent use.
type linkCache struct {
	mu      sync.Mutex
	epoch   uint64 // bumped by every invalidation: an answer from Redis that raced one is not cached
	ttl     time.Duration
	size    int
	entries map[cacheKey]*cacheEntry
	fifo    *list.List // of cacheKey, oldest first
}

func newLinkCache(size int, ttl time.Duration) *linkCache {
	return &linkCache{ttl: ttl, size: size, entries: make(map[cacheKey]*cacheEntry), fifo: list.New()}
}

// get returns the cached pod, or false if absent or expired (an expired entry is dropped).
func (c *linkCache) get(key cacheKey, now time.Time) (int, bool) { return c.getMono(key, mono(now)) }

// getMono is get with now on the monotonic clock (monoNow): the cache-hit path.
func (c *linkCache) getMono(key cacheKey, now int64) (int, bool) {
	c.mu.Lock()
	e, ok := c.entries[key]
	if ok && e.until > now {
		c.mu.Unlock()
		return e.pod, true
	}
	if ok {
		c.remove(key, e)
	}
	c.mu.Unlock()
	return 0, false
}

// put caches a link for ttl, or less when the stored link has less left (remaining >= 0;
// negative: persistent, no limit of its own), counted from since (a time before the request
// that read it).
func (c *linkCache) put(key cacheKey, pod int, remaining time.Duration, since, now time.Time) {
	ttl := c.ttl
	if remaining >= 0 && remaining < ttl {
		ttl = remaining
	}
	if since.After(now) {
		since = now
	}
	deadline := since.Add(ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(key, pod, deadline, now)
}

func (c *linkCache) putLocked(key cacheKey, pod int, deadline, now time.Time) {
	if e, ok := c.entries[key]; ok {
		c.remove(key, e)
	}
	if !deadline.After(now) {
		return
	}
	c.entries[key] = &cacheEntry{pod: pod, until: mono(deadline), order: c.fifo.PushBack(key)}
	for len(c.entries) > c.size {
		oldest := c.fifo.Front().Value.(cacheKey)
		c.remove(oldest, c.entries[oldest])
	}
}

// currentEpoch is read before a request whose answer may be cached (see putIf).
func (c *linkCache) currentEpoch() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// putIf is put, only if no invalidation happened since epoch was read (it may concern this very
// link); otherwise the key is dropped.
func (c *linkCache) putIf(epoch uint64, key cacheKey, pod int, remaining time.Duration, since, now time.Time) {
	ttl := c.ttl
	if remaining >= 0 && remaining < ttl {
		ttl = remaining
	}
	if since.After(now) {
		since = now
	}
	deadline := since.Add(ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		if e, ok := c.entries[key]; ok {
			c.remove(key, e)
		}
		return
	}
	c.putLocked(key, pod, deadline, now)
}

// invalidate drops one link that another gateway or pod removed or moved.
func (c *linkCache) invalidate(key cacheKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	if e, ok := c.entries[key]; ok {
		c.remove(key, e)
	}
}

// dropPods forgets every cached link of the route to any of pods (one pass); returns how many.
func (c *linkCache) dropPods(namespace, service string, pods map[int]bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	n := 0
	for key, e := range c.entries {
		if pods[e.pod] && key.namespace == namespace && key.service == service {
			c.remove(key, e)
			n++
		}
	}
	return n
}

// clear forgets everything (after a gap in the change channel).
func (c *linkCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	clear(c.entries)
	c.fifo.Init()
}

func (c *linkCache) drop(key cacheKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok {
		c.remove(key, e)
	}
}

func (c *linkCache) remove(key cacheKey, e *cacheEntry) {
	c.fifo.Remove(e.order)
	delete(c.entries, key)
}
