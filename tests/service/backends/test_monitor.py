"""Health checks against a simulator process: readmission after the breaker, and what a check may not undo."""

from service.backends.monitor import ReplicaMonitor
from service.backends.pool import ReplicaPool
from service.backends.replica import ScrapedLoad
from service.config import Backend, DispatchSettings
from service.metrics import Metrics
from service.upstream import UpstreamClient
from tests.harness import sims


def one_replica_pool(url: str) -> ReplicaPool:
    """Backend "m" with one replica at `url`; a health check may take 10 s (the simulator shares a busy
    machine, and what these tests check is not a timeout)."""
    return ReplicaPool([Backend(name="m", model="m", replicas=[url])], DispatchSettings(health_timeout_s=10))


async def test_a_passing_health_check_keeps_the_failure_streak_of_a_serving_replica() -> None:
    with sims("m", fault="error") as (sim,):  # completions fail, /health still answers 200
        pool = one_replica_pool(sim.url)
        (replica,) = pool.replicas("m")
        monitor = ReplicaMonitor(pool, UpstreamClient(), Metrics(), {"m": None})
        assert not replica.record_failure(threshold=2, cooldown_s=60)
        await monitor.check_health(replica)
        assert replica.available() and replica.consecutive_failures == 1
        assert replica.record_failure(threshold=2, cooldown_s=60), "the second failure in a row ejects it"


async def test_an_ejected_replica_is_readmitted_with_a_clean_slate_after_its_cooldown() -> None:
    with sims("m") as (sim,):
        pool = one_replica_pool(sim.url)
        (replica,) = pool.replicas("m")
        monitor = ReplicaMonitor(pool, UpstreamClient(), Metrics(), {"m": None})
        assert replica.record_failure(threshold=1, cooldown_s=60)
        await monitor.check_health(replica)
        assert not replica.available(), "still cooling down"
        replica.ejected_until = 0.0  # the cooldown is over
        await monitor.check_health(replica)
        assert replica.available() and replica.consecutive_failures == 0


async def test_a_replica_that_cannot_answer_its_metrics_keeps_its_last_load() -> None:
    with sims("m") as (sim,):
        pool = one_replica_pool(sim.url)
        (replica,) = pool.replicas("m")
        monitor = ReplicaMonitor(pool, UpstreamClient(), Metrics(), {"m": None})
        replica.load = ScrapedLoad(waiting=7, running=4, kv_cache_usage=0.9)  # last seen busy
        sim.kill()  # now /metrics fails, as it can for an engine too busy to answer it
        await monitor.scrape(replica)
        assert replica.load == ScrapedLoad(waiting=7, running=4, kv_cache_usage=0.9)  # a busy one must not look idle

