"""`switchyard eval --router DIR ...`: routers side by side on data files, as µn per benchmark.

Rows always present: `random` (0 by definition: the mean of the candidates' means), `oracle` (100)
and `best_single` — the one candidate that, sent every query, scores best on these files (a fixed
choice in hindsight). A `best_single` artifact given with `--router` takes that row instead.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

import numpy as np

from router_models.base import Router
from router_models.data import RoutingTable, load_table
from router_models.errors import InputError
from router_models.metrics import mu_n


class Results(TypedDict):
    """The `--json` contract: {"average": {router: µn}, "benchmarks": {benchmark: {router: µn}}}."""

    average: dict[str, float]
    benchmarks: dict[str, dict[str, float]]


def best_single_choices(table: RoutingTable) -> np.ndarray:
    """(N,) the fixed candidate with the best mean µn over the benchmarks present."""
    groups = table.by_benchmark()
    mean = [
        np.mean([mu_n(g.scores, np.full(len(g), t)) for g in groups.values()])
        for t in range(len(table.candidates))
    ]
    return np.full(len(table), int(np.argmax(mean)))


def evaluate(routers: dict[str, Router], table: RoutingTable) -> Results:
    """µn of every router (and the reference rows) per benchmark and on average over benchmarks."""
    choices = {name: aligned_scores(router, table).argmax(axis=1) for name, router in routers.items()}
    if "best_single" not in choices:
        choices = {"best_single": best_single_choices(table), **choices}
    tags = np.array(table.benchmarks)
    benchmarks: dict[str, dict[str, float]] = {}
    for bench in sorted(set(table.benchmarks)):
        rows = tags == bench
        scores = table.scores[rows]
        row = {"random": 0.0, "oracle": 100.0 if mu_n(scores, scores.argmax(1)) else 0.0}
        row |= {name: mu_n(scores, picked[rows]) for name, picked in choices.items()}
        benchmarks[bench] = row
    names = list(next(iter(benchmarks.values()))) if benchmarks else []
    average = {name: float(np.mean([b[name] for b in benchmarks.values()])) for name in names}
    return {"average": average, "benchmarks": benchmarks}


def aligned_scores(router: Router, table: RoutingTable) -> np.ndarray:
    """The router's scores of the table's queries, columns in the table's candidate order."""
    columns = [list(router.candidates).index(name) for name in table.candidates]
    return router.score(table.prompts)[:, columns]


def format_table(results: Results) -> str:
    """Routers as rows, benchmarks (then the average) as columns."""
    benches = list(results["benchmarks"])
    names = list(results["average"])
    width = max([len(n) for n in names] + [6])
    head = f"{'router':<{width}}  " + "  ".join(f"{b[:10]:>10}" for b in [*benches, "average"])
    lines = [head, "-" * len(head)]
    for name in names:
        cells = [results["benchmarks"][b][name] for b in benches] + [results["average"][name]]
        lines.append(f"{name:<{width}}  " + "  ".join(f"{c:>10.1f}" for c in cells))
    return "\n".join(lines)


def plot_results(results: Results, path: str | Path, title: str = "Routing quality (µn)") -> None:
    """Grouped bars: one group per benchmark plus the average, one bar per router."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [*results["benchmarks"], "average"]
    names = [n for n in results["average"] if n not in ("oracle", "random")]  # 100 and 0 by definition
    values = {
        n: [results["benchmarks"][g][n] if g != "average" else results["average"][n] for g in groups]
        for n in names
    }
    fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(groups)), 4.5))
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        ax.bar(np.arange(len(groups)) + (k - (len(names) - 1) / 2) * width, values[name], width, label=name)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(groups)), groups, rotation=20)
    ax.set_ylabel("µn (random = 0, oracle = 100)")
    ax.set_title(title)
    ax.legend(fontsize=8, ncols=min(4, len(names)))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def unique_names(routers: Sequence[Router]) -> list[str]:
    """Artifacts are named by kind; a repeated kind gets -2, -3, ..."""
    names: list[str] = []
    for router in routers:
        name, n = router.kind, 1
        while name in names or name in ("random", "oracle"):
            n += 1
            name = f"{router.kind}-{n}"
        names.append(name)
    return names


def eval_command(args: argparse.Namespace) -> int:
    from router_models.registry import load_router

    routers = [load_router(path) for path in args.router]
    candidates = routers[0].candidates
    for path, router in zip(args.router, routers, strict=True):
        if sorted(router.candidates) != sorted(candidates):  # the order may differ: columns are matched by name
            raise InputError(f"--router {path} routes to {', '.join(router.candidates)}, but --router "
                             f"{args.router[0]} to {', '.join(candidates)}: routers compared must share candidates")
    table = load_table(args.data, candidates)
    if not len(table):
        raise InputError(f"no line of {', '.join(map(str, args.data))} scores every candidate of the routers "
                         f"({', '.join(candidates)}; {table.dropped} lines lack one)")
    print(
        f"{len(table)} queries, {len(set(table.benchmarks))} benchmarks"
        + (f" ({table.dropped} lines lacking a candidate's score dropped)" if table.dropped else "")
    )
    results = evaluate(dict(zip(unique_names(routers), routers, strict=True)), table)
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        plot_results(results, args.plot)
    return 0
