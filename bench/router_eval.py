"""Train and evaluate every router on both protocols and print µn tables.

    python bench/router_eval.py DATA.jsonl.gz ... [--protocol both] [--artifacts artifacts/bench]

in-distribution: train on the 'train' part of every file, pick checkpoints on 'val', test on 'test'
(the default training config, i.e. what `switchyard train --data ... --out DIR` builds).
leave-one-out: for each test benchmark, train on every other file (cheaper config: see --lobo-*),
test on the whole held-out benchmark. Artifacts are kept under --artifacts and reused when present,
so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from router_models.artifact import MANIFEST
from router_models.base import Router
from router_models.baselines import BestSingleConfig, BestSingleRouter, KnnConfig, KnnRouter
from router_models.data import (
    Record,
    RoutingTable,
    SplitSpec,
    default_candidates,
    id_fraction,
    read_records,
    split_records,
)
from router_models.encoder import SentenceEncoder, set_threads
from router_models.evaluate import Results, evaluate, format_table, plot_results
from router_models.lookahead.config import LookaheadConfig
from router_models.lookahead.router import LookaheadRouter, MlcRouter
from router_models.registry import load_router

TRAINING_ONLY = {"SelfOSSInstructSC2"}  # a training set: never a test benchmark


class EmbeddingCache:
    """Frozen MiniLM embeddings of prompts by id, computed once for all kNN fits and kept on disk."""

    def __init__(self, path: Path, config: KnnConfig) -> None:
        self.path = path
        self.vectors: dict[str, torch.Tensor] = torch.load(path) if path.is_file() else {}
        self.encoder = SentenceEncoder(max_length=config.max_query_tokens)

    def keys(self, table: RoutingTable) -> torch.Tensor:
        missing = [i for i, rid in enumerate(table.ids) if rid not in self.vectors]
        if missing:
            vectors = self.encoder.encode([table.prompts[i] for i in missing])
            self.vectors |= {table.ids[i]: v for i, v in zip(missing, vectors, strict=True)}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(self.vectors, self.path)
        return torch.stack([self.vectors[rid] for rid in table.ids])

    def knn(self, train: RoutingTable, config: KnnConfig) -> KnnRouter:
        return KnnRouter(
            train.candidates,
            config,
            self.keys(train),
            torch.from_numpy(train.normalised).float(),
            self.encoder,
        )


def sample(table: RoutingTable, limit: int, per_benchmark: bool = False) -> RoutingTable:
    """A deterministic subset (by id hash): at most `limit` rows, or per benchmark; 0 keeps all."""
    if not limit:
        return table
    order = sorted(range(len(table)), key=lambda i: id_fraction(table.ids[i]))
    if not per_benchmark:
        return table.subset(sorted(order[:limit]))
    taken: dict[str, int] = {}
    rows = []
    for i in order:
        bench = table.benchmarks[i]
        if taken.get(bench, 0) < limit:
            taken[bench] = taken.get(bench, 0) + 1
            rows.append(i)
    return table.subset(sorted(rows))


def fit_or_load(directory: Path, fit: object) -> Router:
    if (directory / MANIFEST).is_file():
        print(f"  reusing {directory}")
        return load_router(directory)
    start = time.perf_counter()
    router: Router = fit()  # type: ignore[operator]
    router.save(directory)
    print(f"  trained {router.kind} in {time.perf_counter() - start:.0f} s -> {directory}")
    return router


def run_split(
    records: list[Record],
    spec: SplitSpec,
    out: Path,
    config: LookaheadConfig,
    cache: EmbeddingCache,
    knn_config: KnnConfig,
    args: argparse.Namespace,
) -> Results:
    candidates = default_candidates(records)
    parts = split_records(records, spec)
    train, val = (RoutingTable.build(parts[p], candidates) for p in ("train", "val"))
    test = RoutingTable.build([r for r in parts["test"] if r.benchmark not in TRAINING_ONLY], candidates)
    test = sample(test, args.test_per_benchmark, per_benchmark=True)
    print(f"{spec.protocol} {spec.holdout or ''}: train {len(train)}, val {len(val)}, test {len(test)}")
    routers: dict[str, Router] = {"best_single": BestSingleRouter.fit(train, BestSingleConfig())}
    if "knn" in args.kinds:
        routers["knn"] = fit_or_load(
            out / "knn", lambda: cache.knn(sample(train, args.knn_train_queries), knn_config)
        )
    for kind, cls in (("mlc", MlcRouter), ("lookahead", LookaheadRouter)):
        if kind in args.kinds:
            routers[kind] = fit_or_load(
                out / kind,
                lambda cls=cls, kind=kind: cls.fit(train, config, val, out / kind / "checkpoint", True),
            )
    return evaluate(routers, test)


def summarise(name: str, results: Results, plot: Path) -> None:
    average = results["average"]
    print(f"\n== {name}: µn per benchmark and average")
    print(format_table(results))
    if {"lookahead", "mlc", "knn"} <= set(average):
        ratio = average["lookahead"] / average["mlc"] if average["mlc"] else float("nan")
        print(
            f"lookahead / mlc = {ratio:.2f} (target >= 1.10); "
            f"lookahead - knn = {average['lookahead'] - average['knn']:+.1f} (target > 0)"
        )
    plot_results(results, plot, title=f"Routing quality, {name} (µn)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", nargs="+", help="routing data files")
    parser.add_argument("--protocol", choices=["in-distribution", "leave-one-out", "both"], default="both")
    parser.add_argument("--artifacts", default="artifacts/bench", help="where artifacts and results go")
    parser.add_argument(
        "--holdouts", nargs="*", help="leave-one-out benchmarks (default: every test benchmark)"
    )
    parser.add_argument("--kinds", default="knn,mlc,lookahead", help="learned routers to train (comma list)")
    parser.add_argument("--train-queries", type=int, help="override the default config's training subset")
    parser.add_argument("--val-queries", type=int, help="override the default config's validation subset")
    parser.add_argument("--knn-train-queries", type=int, default=0, help="kNN memory size (0 = all training)")
    parser.add_argument(
        "--test-per-benchmark", type=int, default=0, help="test subset per benchmark (0 = all)"
    )
    parser.add_argument(
        "--lobo-train-queries", type=int, default=320, help="training subset per held-out run"
    )
    parser.add_argument(
        "--lobo-val-queries", type=int, default=200, help="validation subset per held-out run"
    )
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    set_threads(args.threads)
    args.kinds = set(args.kinds.split(","))
    out = Path(args.artifacts)
    records = read_records(args.data)
    knn_config = KnnConfig()
    cache = EmbeddingCache(out / "embeddings.pt", knn_config)
    default = LookaheadConfig()
    overrides = {"max_train_queries": args.train_queries, "max_val_queries": args.val_queries}
    default = dataclasses.replace(default, **{k: v for k, v in overrides.items() if v is not None})
    if args.protocol in ("in-distribution", "both"):
        results = run_split(records, SplitSpec(), out / "in-distribution", default, cache, knn_config, args)
        (out / "in-distribution.json").write_text(json.dumps(results, indent=2) + "\n")
        summarise("in-distribution (test split)", results, out / "in-distribution.png")
    if args.protocol in ("leave-one-out", "both"):
        config = dataclasses.replace(
            default,
            max_train_queries=args.lobo_train_queries,
            max_val_queries=args.lobo_val_queries,
            eval_every=10,
        )
        holdouts = args.holdouts or sorted({r.benchmark for r in records} - TRAINING_ONLY)
        merged: Results = {"average": {}, "benchmarks": {}}
        for bench in holdouts:
            part = run_split(
                records,
                SplitSpec("leave-one-out", bench),
                out / "leave-one-out" / bench,
                config,
                cache,
                knn_config,
                args,
            )
            merged["benchmarks"][bench] = part["benchmarks"][bench]
            (out / "leave-one-out.json").write_text(json.dumps(merged, indent=2) + "\n")
        names = list(next(iter(merged["benchmarks"].values())))
        merged["average"] = {
            n: sum(b[n] for b in merged["benchmarks"].values()) / len(merged["benchmarks"]) for n in names
        }
        (out / "leave-one-out.json").write_text(json.dumps(merged, indent=2) + "\n")
        summarise("leave-one-benchmark-out", merged, out / "leave-one-out.png")


if __name__ == "__main__":
    main()
