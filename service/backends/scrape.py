"""Read the few vLLM engine gauges the dispatcher needs from Prometheus text, fast."""

from __future__ import annotations

from service.backends.replica import ScrapedLoad

_FIELDS = {
    "vllm:num_requests_waiting": "waiting",
    "vllm:num_requests_running": "running",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
}


def parse_vllm_load(text: str) -> ScrapedLoad:
    """The request gauges summed over their label sets (several engines or models on one server add up); the
    KV-cache use, a share per engine, as its largest value (the engine closest to preempting)."""
    totals = dict.fromkeys(_FIELDS.values(), 0.0)
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        name_end = min((i for i in (line.find("{"), line.find(" ")) if i >= 0), default=-1)
        if name_end < 0:
            continue
        target = _FIELDS.get(line[:name_end])
        if target is None:
            continue
        brace = line.find("}")
        rest = line[brace + 1 :] if brace >= 0 else line[name_end:]
        try:
            value = float(rest.split()[0])
        except (IndexError, ValueError):
            continue
        totals[target] = max(totals[target], value) if target == "kv_cache_usage" else totals[target] + value
    return ScrapedLoad(**totals)
