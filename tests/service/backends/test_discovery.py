"""DNS discovery: every address a backend's host resolves to becomes a replica, followed as it changes."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from service.backends.discovery import resolve_addresses
from service.backends.monitor import ReplicaMonitor
from service.backends.pool import ReplicaPool
from service.config import ConfigError, parse_settings
from service.dispatch import Dispatcher
from service.metrics import Metrics
from service.upstream import UpstreamClient
from tests.harness import GatewayServer, SimProcess, direct_config, free_port, metric_value, wait_until

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


class FakeDns:
    """What the headless Service's name resolves to right now (an OSError: the lookup fails)."""

    def __init__(self, *addresses: str) -> None:
        self.answer: list[str] | OSError = list(addresses)
        self.lookups = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        assert host == "pods.test"
        self.lookups += 1
        if isinstance(self.answer, OSError):
            raise self.answer
        return list(self.answer)


@pytest.fixture(scope="module")
def pods() -> Iterator[tuple[int, list[SimProcess]]]:
    port = free_port()
    sims = [SimProcess("m", port, host=host).start() for host in ("127.0.0.1", "127.0.0.2")]
    try:
        yield port, sims
    finally:
        for sim in sims:
            sim.kill()


def served(sim: SimProcess) -> float:
    return metric_value(httpx.get(sim.url + "/metrics").text, "vllm:request_success_total")


def replicas_seen(gateway: GatewayServer) -> set[str]:
    exposition = httpx.get(gateway.url + "/metrics").text
    return {line.split('replica="')[1].split('"')[0] for line in exposition.splitlines()
            if line.startswith("switchyard_replica_healthy{")}


def test_the_gateway_balances_over_every_address_and_follows_changes(pods: tuple[int, list[SimProcess]]) -> None:
    port, (first, second) = pods
    dns = FakeDns("127.0.0.1", "127.0.0.2")
    config = direct_config({"m": [f"http://pods.test:{port}"]})
    config["backends"][0].update(discovery="dns", discovery_interval_s=0.1)
    with GatewayServer(config, resolve=dns) as gateway:
        assert replicas_seen(gateway) == {first.url, second.url}
        before = [served(first), served(second)]
        for _ in range(20):
            assert httpx.post(gateway.url + "/v1/chat/completions", json=CHAT).status_code == 200
        assert served(first) > before[0] and served(second) > before[1]  # both pods take requests

        dns.answer = ["127.0.0.2"]  # the first pod is gone
        wait_until(lambda: replicas_seen(gateway) == {second.url}, what="the first pod dropped")
        before = [served(first), served(second)]
        for _ in range(5):
            assert httpx.post(gateway.url + "/v1/chat/completions", json=CHAT).status_code == 200
        assert [served(first), served(second)] == [before[0], before[1] + 5]

        dns.answer = socket.gaierror("Name or service not known")  # the lookup fails: what there is stays
        lookups = dns.lookups
        wait_until(lambda: dns.lookups > lookups + 1, what="lookups that fail")
        assert replicas_seen(gateway) == {second.url}
        assert httpx.post(gateway.url + "/v1/chat/completions", json=CHAT).status_code == 200

        dns.answer = ["127.0.0.1", "127.0.0.2"]  # it is back
        wait_until(lambda: replicas_seen(gateway) == {first.url, second.url}, what="the first pod back")
        assert gateway.metric("switchyard_replica_healthy", replica=first.url) == 1


def test_a_name_that_does_not_resolve_at_start_keeps_the_url_as_written(pods: tuple[int, list[SimProcess]]) -> None:
    port, _ = pods
    dns = FakeDns()
    dns.answer = socket.gaierror("Temporary failure in name resolution")
    config = direct_config({"m": [f"http://pods.test:{port}"]})
    config["backends"][0].update(discovery="dns", discovery_interval_s=60)
    with GatewayServer(config, resolve=dns) as gateway:
        assert replicas_seen(gateway) == {f"http://pods.test:{port}"}


async def test_the_system_resolver_gives_the_addresses_of_a_name() -> None:
    # from /etc/hosts, no DNS server needed; IPv4 only where there is IPv4 (dual stack: one replica per pod)
    assert await resolve_addresses("localhost", 8000) == ["127.0.0.1"]


async def test_a_replica_gone_leaves_no_series_and_no_idle_connections() -> None:
    settings = parse_settings(direct_config({"m": ["http://10.0.0.1:8000", "http://10.0.0.2:8000"]}))
    pool, metrics, client = ReplicaPool(settings.backends, settings.dispatch), Metrics(), UpstreamClient()
    monitor = ReplicaMonitor(pool, client, metrics, {"m": None})
    gone = pool.replicas("m")[0]
    monitor.publish(gone)
    metrics.upstream_errors.labels("m", gone.url, "status").inc()
    await monitor.forget([gone])
    exposition = metrics.render().decode()
    assert gone.url not in exposition
    # a request still under way on it fails: no series comes back (it would stay for good)
    dispatcher = Dispatcher(settings, pool, client, metrics)
    dispatcher._count_failure(gone, "status", "it is gone")
    dispatcher._count_error(gone, "timeout")  # a stream past its whole limit counts no failure, only the error
    assert gone.url not in metrics.render().decode()
    await client.close()


def test_dns_discovery_of_https_replicas_is_refused() -> None:
    config = direct_config({"m": ["https://pods.test:8443"]})
    config["backends"][0]["discovery"] = "dns"
    with pytest.raises(ConfigError, match="backends.0: Value error, discovery: dns needs http replica URLs"):
        parse_settings(config)
