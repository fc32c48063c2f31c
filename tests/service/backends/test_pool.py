import time

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


def test_no_healthy_replica_says_when_one_may_serve_again() -> None:
    pool = make_pool(2, health_interval_s=2.0)
    a, b = pool.replicas("m")
    a.record_failure(threshold=1, cooldown_s=60)
    b.healthy = False  # failed its health checks: back at the next passing one
    with pytest.raises(NoHealthyReplica) as unhealthy:
        pool.pick("m")
    assert unhealthy.value.headers == {"Retry-After": "2"}
    b.record_failure(threshold=1, cooldown_s=30)
    with pytest.raises(NoHealthyReplica) as ejected:
        pool.pick("m")
    assert int(ejected.value.headers["Retry-After"]) in (31, 32)  # the shorter cooldown, then a check
    b.ejected_until = 0.0
    b.healthy = True
    with pytest.raises(NoHealthyReplica) as tried:
        pool.pick("m", exclude=[b])  # this request tried b; the next one may use it at once
    assert tried.value.headers == {"Retry-After": "1"}


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


def test_a_readmitted_replica_takes_one_request_at_a_time_until_one_succeeds() -> None:
    pool = make_pool(2)
    a, b = pool.replicas("m")
    assert a.record_failure(threshold=1, cooldown_s=60)
    a.ejected_until, a.healthy = 0.0, True  # cooled down and passed a health check: on probation
    b.in_flight = 5
    assert pool.pick("m") is a  # idle, so it gets its test request despite b's load ...
    a.in_flight = 1
    assert pool.pick("m") is b  # ... and nothing more while that one runs
    b.healthy = False
    assert pool.pick("m") is a  # unless nothing else can serve
    a.record_success()
    b.healthy = True
    assert not a.probation and pool.pick("m") is a  # proven: least-loaded as any other


def test_a_failure_on_probation_ejects_again_for_twice_as_long_up_to_eight_times() -> None:
    (replica,) = make_pool(1).replicas("m")
    cooldowns = []
    for threshold in (1, 3, 3, 3, 3):  # the first ejection by the breaker, then one failure on probation each
        before = time.monotonic()
        ejected_for = replica.record_failure(threshold=threshold, cooldown_s=10)
        assert before + ejected_for <= replica.ejected_until <= time.monotonic() + ejected_for
        cooldowns.append(ejected_for)
        replica.ejected_until, replica.healthy = 0.0, True  # cooled down, health check passed
    assert cooldowns == [10, 20, 40, 80, 80]
    replica.record_success()
    assert not replica.record_failure(threshold=3, cooldown_s=10)  # proven again: three in a row to eject


def test_discovered_replicas_replace_the_list_and_known_ones_keep_their_state() -> None:
    pool = make_pool(2)
    a, b = pool.replicas("m")
    a.record_failure(threshold=1, cooldown_s=60)
    added, removed = pool.set_replicas("m", [a.url, "http://10.0.0.7:8000/"])
    assert pool.replicas("m")[0] is a and not a.available()  # still ejected
    assert [r.url for r in added] == ["http://10.0.0.7:8000"] and removed == [b]
    assert pool.set_replicas("m", [a.url, "http://10.0.0.7:8000"]) == ([], [])
