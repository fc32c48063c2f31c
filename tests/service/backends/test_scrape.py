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
vllm:num_requests_running_bogus 100
"""


def test_request_gauges_add_up_over_engines_and_kv_cache_use_is_the_fullest_engines() -> None:
    load = parse_vllm_load(VLLM_METRICS)
    assert (load.running, load.waiting, load.kv_cache_usage) == (3.0, 3.0, 0.25)  # a share, not 0.375


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
