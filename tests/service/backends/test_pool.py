import pytest

from service.backends.pool import ReplicaPool
from service.backends.replica import ScrapedLoad
from service.config import Backend, DispatchSettings
from service.errors import NoHealthyReplica, Saturated


def make_pool(n: int = 3, **settings: object) -> ReplicaPool:
    backend = Backend(name="m", model="m", replicas=[f"http://127.0.0.1:{9000 + i}" for i in range(n)])
    return ReplicaPool([backend], DispatchSettings(**settings))


def test_picks_the_least_loaded_replica() -> None:
    pool = make_pool()
    a, b, c = pool.replicas("m")
    a.load = ScrapedLoad(running=4)
    b.in_flight = 2
    c.load = ScrapedLoad(running=1, waiting=1)  # a queue weighs more than running work
    assert pool.pick("m") is b


def test_local_in_flight_counts_when_the_scrape_is_stale() -> None:
    pool = make_pool(2)
    a, b = pool.replicas("m")
    a.in_flight = 5  # sent since the last scrape, which still says idle
    b.load = ScrapedLoad(running=2)
    assert pool.pick("m") is b


def test_nearly_full_kv_cache_is_avoided() -> None:
    pool = make_pool(2)
    a, b = pool.replicas("m")
    a.load = ScrapedLoad(running=1, kv_cache_usage=0.99)
    b.load = ScrapedLoad(running=3, kv_cache_usage=0.5)
    assert pool.pick("m") is b


def test_unhealthy_ejected_and_excluded_replicas_are_skipped() -> None:
    pool = make_pool()
    a, b, c = pool.replicas("m")
    a.healthy = False
    b.record_failure(threshold=1, cooldown_s=60)
    assert pool.pick("m") is c
    with pytest.raises(NoHealthyReplica):
        pool.pick("m", exclude=[c])


def test_all_saturated_raises_saturated() -> None:
    pool = make_pool(2, saturation_queue=4)
    a, b = pool.replicas("m")
    a.load = ScrapedLoad(waiting=4)
    assert pool.can_take("m")  # b still can
    b.load = ScrapedLoad(waiting=4)
    assert not pool.can_take("m")
    with pytest.raises(Saturated):
        pool.pick("m")


def test_a_backend_without_an_available_replica_cannot_take_a_request() -> None:
    pool = make_pool(2)
    a, b = pool.replicas("m")
    a.healthy = False
    assert pool.can_take("m")
    b.record_failure(threshold=1, cooldown_s=60)  # ejected by the breaker
    assert not pool.can_take("m")


def test_breaker_ejects_after_consecutive_failures_only() -> None:
    pool = make_pool(1, breaker_failures=3)
    (replica,) = pool.replicas("m")
    assert not replica.record_failure(3, 10)
    replica.record_success()
    assert not replica.record_failure(3, 10)
    assert not replica.record_failure(3, 10)
    assert replica.record_failure(3, 10)
    assert not replica.available()
