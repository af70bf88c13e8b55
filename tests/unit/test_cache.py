"""The local link cache: bounded, per-entry TTL on an injected clock, collision-free keys."""

from __future__ import annotations

from stateful_route.gateway.cache import LinkCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_ttl_or_sooner_when_the_stored_link_does():
    clock = FakeClock()
    cache = LinkCache(size=10, ttl=240, clock=clock)
    cache.put(("ns", "svc", "a"), 3)
    cache.put(("ns", "svc", "b"), 4, remaining=30)
    clock.now += 29.9
    assert (cache.get(("ns", "svc", "a")), cache.get(("ns", "svc", "b"))) == (3, 4)
    clock.now += 0.2
    assert (cache.get(("ns", "svc", "a")), cache.get(("ns", "svc", "b"))) == (3, None)
    clock.now += 210
    assert cache.get(("ns", "svc", "a")) is None


def test_size_is_bounded():
    cache = LinkCache(size=100, ttl=60, clock=FakeClock())
    for i in range(1000):
        cache.put(("ns", "svc", str(i)), i)
    assert len(cache) == 100
    assert cache.get(("ns", "svc", "999")) == 999
    assert cache.get(("ns", "svc", "899")) is None  # the oldest went first
    cache.put(("ns", "svc", "900"), 900)  # refreshed: it starts again at the back
    cache.put(("ns", "svc", "new"), 1)
    assert cache.get(("ns", "svc", "900")) == 900
    assert cache.get(("ns", "svc", "901")) is None


def test_keys_with_separators_do_not_collide():
    cache = LinkCache(size=10, ttl=60, clock=FakeClock())
    cache.put(("ns", "a:b", "c"), 1)
    cache.put(("ns", "a", "b:c"), 2)
    assert cache.get(("ns", "a:b", "c")) == 1
    assert cache.get(("ns", "a", "b:c")) == 2


def test_drop_pods_forgets_only_those_pods_links_in_that_route():
    cache = LinkCache(size=10, ttl=60, clock=FakeClock())
    cache.put(("ns", "svc", "a"), 1)
    cache.put(("ns", "svc", "b"), 2)
    cache.put(("ns", "other", "c"), 1)
    assert cache.drop_pods("ns", "svc", frozenset({1})) == 1
    assert [cache.get(("ns", "svc", u)) for u in "ab"] == [None, 2]
    assert cache.get(("ns", "other", "c")) == 1


def test_a_non_positive_remaining_ttl_caches_nothing():
    cache = LinkCache(size=10, ttl=60, clock=FakeClock())
    cache.put(("ns", "svc", "a"), 1, remaining=0)
    assert ("ns", "svc", "a") not in cache
