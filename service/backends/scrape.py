"""Read the few vLLM engine metrics the dispatcher needs from Prometheus text, fast."""

from __future__ import annotations

from service.backends.replica import ScrapedLoad

_FIELDS = {
    "vllm:num_requests_waiting": "waiting",
    "vllm:num_requests_running": "running",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
    "vllm:generation_tokens_total": "generated_tokens",
    "vllm:inter_token_latency_seconds_sum": "token_gap_seconds",
    "vllm:inter_token_latency_seconds_count": "token_gaps",
}


def parse_vllm_load(text: str) -> ScrapedLoad:
    """The request gauges, the generated-token counter and the inter-token latency's sum and count, summed over
    their label sets (several engines or models on one server add up); the KV-cache use, a share per engine, as
    its largest value (the engine closest to preempting).

    Each metric's lines are found by searching for its name at a line start, so the hundreds of other
    lines of a vLLM page (histogram buckets, mostly) are never split or looked at one by one."""
    totals = dict.fromkeys(_FIELDS.values(), 0.0)
    text = "\n" + text
    for name, target in _FIELDS.items():
        needle = "\n" + name
        at = text.find(needle)
        while at >= 0:
            end = text.find("\n", at + 1)
            line = text[at + 1 : end if end >= 0 else len(text)]
            value = _value(line, len(name))
            if value is not None:
                totals[target] = max(totals[target], value) if target == "kv_cache_usage" else totals[target] + value
            at = text.find(needle, end) if end >= 0 else -1
    return ScrapedLoad(**totals)


def _value(line: str, name_end: int) -> float | None:
    """The sample value of a line whose metric name ends at `name_end` (None: another name, or no number)."""
    if line[name_end : name_end + 1] == "{":
        brace = line.find("}", name_end)
        rest = line[brace + 1 :] if brace >= 0 else ""
    elif line[name_end : name_end + 1] == " ":
        rest = line[name_end:]
    else:
        return None  # a longer name that starts with this one
    try:
        return float(rest.split()[0])
    except (IndexError, ValueError):
        return None
