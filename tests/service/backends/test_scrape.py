from service.backends.replica import Replica, ScrapedLoad
from service.backends.scrape import parse_vllm_load

VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="smol"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="smol"} 2.0
vllm:num_requests_waiting{engine="1",model_name="smol"} 1.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="smol"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="smol"} 0.125
vllm:prefix_cache_hits_total{engine="0",model_name="smol"} 99.0
vllm:generation_tokens_total{engine="0",model_name="smol"} 1200.0
vllm:generation_tokens_created{engine="0",model_name="smol"} 1.7e+09
vllm:generation_tokens_total{engine="1",model_name="smol"} 34.0
vllm:inter_token_latency_seconds_bucket{engine="0",le="0.01",model_name="smol"} 7.0
vllm:inter_token_latency_seconds_sum{engine="0",model_name="smol"} 2.5
vllm:inter_token_latency_seconds_count{engine="0",model_name="smol"} 40.0
vllm:inter_token_latency_seconds_sum{engine="1",model_name="smol"} 0.5
vllm:inter_token_latency_seconds_count{engine="1",model_name="smol"} 10.0
vllm:num_requests_running_bogus 100
"""


def test_request_gauges_add_up_over_engines_and_kv_cache_use_is_the_fullest_engines() -> None:
    load = parse_vllm_load(VLLM_METRICS)
    assert (load.running, load.waiting, load.kv_cache_usage) == (3.0, 3.0, 0.25)  # a share, not 0.375
    assert load.generated_tokens == 1234.0  # the counter's samples, not its `_created` time
    assert (load.token_gap_seconds, load.token_gaps) == (3.0, 50.0)  # the histogram's sum and count, not buckets


def test_garbage_and_missing_values_read_as_zero() -> None:
    load = parse_vllm_load("vllm:num_requests_waiting{a=\"b\"} NaNx\nvllm:num_requests_running\n")
    assert (load.running, load.waiting) == (0.0, 0.0)


def test_the_gauges_are_found_anywhere_on_a_large_page() -> None:
    buckets = "".join(f'vllm:e2e_request_latency_seconds_bucket{{le="{i}",model_name="smol"}} {i}\n'
                      for i in range(5_000))
    page = ('vllm:num_requests_waiting{engine="0"} 4.0\r\n' + buckets + VLLM_METRICS
            + 'vllm:num_requests_running 2.0')  # the first line, CRLF, the last line without its newline
    load = parse_vllm_load(page)
    assert (load.running, load.waiting, load.kv_cache_usage) == (5.0, 7.0, 0.25)


def test_a_replica_is_seen_generating_when_its_token_counter_rose_after_the_send_and_lately() -> None:
    replica = Replica("m", "http://a")
    replica.take_load(ScrapedLoad(generated_tokens=50), now=10.0)  # the first scrape: no rise seen yet
    sent = replica.sent(10.0)
    assert not replica.generating_since(sent, now=10.0, fresh_s=5.0)
    replica.take_load(ScrapedLoad(running=1, generated_tokens=50), now=20.0)  # running, no new token: stalled
    assert not replica.generating_since(sent, now=20.0, fresh_s=5.0) and replica.load.running == 1
    replica.take_load(ScrapedLoad(generated_tokens=60), now=30.0)  # it generated between 20 and 30
    assert replica.generating_since(sent, now=30.0, fresh_s=5.0)
    assert not replica.generating_since(replica.sent(25.0), now=30.0, fresh_s=5.0)  # not surely after 25
    replica.take_load(ScrapedLoad(generated_tokens=60), now=32.0)  # a scrape inside one long engine step
    assert replica.generating_since(sent, now=33.0, fresh_s=5.0)  # it rose lately: not frozen
    assert not replica.generating_since(sent, now=36.0, fresh_s=5.0)  # nothing for 6 s: it may have frozen
    replica.take_load(ScrapedLoad(generated_tokens=3), now=50.0)  # restarted: the counter starts again
    replica.take_load(ScrapedLoad(generated_tokens=9), now=60.0)
    assert replica.generating_since(replica.sent(50.0), now=60.0, fresh_s=5.0)


def test_a_rise_seen_after_a_gap_in_the_scrapes_is_not_dated_recent() -> None:
    """The tokens may have come at any time in the gap, long before the scrape that saw them."""
    replica = Replica("m", "http://a")
    replica.take_load(ScrapedLoad(generated_tokens=0), now=10.0, max_gap_s=2.0)
    sent = replica.sent(10.5)
    replica.take_load(ScrapedLoad(generated_tokens=60), now=30.0, max_gap_s=2.0)  # scrapes failed from 10 to 30
    assert not replica.generating_since(sent, now=30.5, fresh_s=5.0)
    replica.take_load(ScrapedLoad(generated_tokens=70), now=31.0, max_gap_s=2.0)  # the next one does count
    assert replica.generating_since(sent, now=31.5, fresh_s=5.0)


def test_a_replica_with_a_queue_is_not_seen_generating_for_a_request_that_may_be_waiting() -> None:
    replica = Replica("m", "http://a")
    for now, tokens, waiting in ((10.0, 0, 0), (20.0, 30, 2), (30.0, 60, 0)):
        replica.take_load(ScrapedLoad(generated_tokens=tokens, waiting=waiting), now=now)
    assert not replica.generating_since(replica.sent(15.0), now=30.0, fresh_s=5.0)  # queued at 20: it may wait
    assert not replica.generating_since(replica.sent(20.5), now=30.0, fresh_s=5.0)  # nor surely generated since
    replica.take_load(ScrapedLoad(generated_tokens=90), now=40.0)
    assert replica.generating_since(replica.sent(25.0), now=40.0, fresh_s=5.0)


def test_the_time_per_token_since_the_send_tells_a_stuck_answer_from_a_long_one() -> None:
    replica = Replica("m", "http://a")
    replica.take_load(ScrapedLoad(token_gap_seconds=1.0, token_gaps=10), now=10.0)
    sent = replica.sent(10.0)
    assert replica.could_run_long(sent, max_tokens=1, limit_s=8.0)  # nothing timed since the send: it could
    replica.take_load(ScrapedLoad(token_gap_seconds=3.0, token_gaps=30), now=20.0)  # 0.1 s per token since
    assert replica.could_run_long(sent, max_tokens=None, limit_s=8.0)  # no budget: up to the context
    assert replica.could_run_long(sent, max_tokens=20, limit_s=8.0)  # 2 s of its 8 s limit: might run past it
    assert not replica.could_run_long(sent, max_tokens=19, limit_s=8.0)  # well under: unfinished means stuck
    replica.take_load(ScrapedLoad(token_gap_seconds=3.3, token_gaps=130), now=30.0)  # faster lately
    assert replica.could_run_long(sent, max_tokens=200, limit_s=8.0)  # 0.019 s per token since the send
    assert not replica.could_run_long(sent, max_tokens=100, limit_s=8.0)
    replica.take_load(ScrapedLoad(token_gap_seconds=0.5, token_gaps=5), now=40.0)  # restarted: no timing since
    assert replica.could_run_long(sent, max_tokens=1, limit_s=8.0)


def test_a_replica_ejected_by_the_breaker_is_scraped_while_its_health_checks_pass() -> None:
    replica = Replica("m", "http://a")
    assert replica.record_failure(threshold=1, cooldown_s=60)
    assert not replica.available() and replica.scrapable()  # its engine's progress stays known
    replica.failed_checks = 1
    assert not replica.scrapable()  # down: a scrape would only wait for its timeout
