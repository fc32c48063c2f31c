"""Judge the ThinkSwitcher on held-out questions (the `test` id-hash split) against its accuracy and cost targets.

    python bench/switcher_eval.py DATA... [--switcher DIR] [--json FILE] [--plot FILE.png]

Without `--switcher`, trains one first on the train+val splits of DATA (defaults, τ chosen on cross-validated
predictions) into `--out` (default: a temporary directory). Prints the eval table and, per benchmark, whether
the targets are met: GSM8K accuracy ≥ better single mode + 0.5 pt at ≤ 40% of always-long's tokens and a curve
never below random mixing (under the same short retry as the switcher, where it has one); MATH accuracy ≥
always-long − 1 pt with ≤ 50% sent long.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.switcher_targets import (  # noqa: E402
    MAX_DROP_POINTS,
    MAX_LONG_SHARE,
    MAX_TOKEN_SHARE,
    MIN_GAIN_POINTS,
    met,
)
from router_models.cli import check_output_file, exit_status  # noqa: E402
from router_models.thinkswitch.artifact import read_manifest  # noqa: E402
from router_models.thinkswitch.curves import above_random, reference  # noqa: E402
from router_models.thinkswitch.data import load_records, select_split  # noqa: E402
from router_models.thinkswitch.evaluate import (  # noqa: E402
    BenchmarkResult,
    at_trained_cap,
    evaluate,
    in_sample_warning,
    plot,
    report,
    write_json,
)
from router_models.thinkswitch.switcher import load_switcher  # noqa: E402


def verdict(result: BenchmarkResult) -> str:
    """The ThinkSwitcher target for this benchmark, checked at the artifact's chosen τ."""
    long = result.baselines["always_long"]
    chosen = result.chosen
    points = 100 * (chosen["accuracy"] - reference(result.outcomes))
    share = chosen["long_share"]
    if result.outcomes.has_tokens:
        ratio = (chosen["mean_tokens"] or 0.0) / (long["mean_tokens"] or 1.0)
        above = above_random(result.curve, result.switched)  # random mixing under the same policy (retry)
        ok = bool(met(points, share, ratio)) and above
        return (
            f"{'MET' if ok else 'NOT MET'}: {points:+.2f} pt vs better single mode (target ≥ +{MIN_GAIN_POINTS}), "
            f"tokens {100 * ratio:.1f}% of always-long (≤ {100 * MAX_TOKEN_SHARE:.0f}%), "
            f"curve ≥ random mixing{' with the same retry' if result.short_retry else ''} everywhere: {above}"
        )
    ok = bool(met(points, share, None))
    return (
        f"{'MET' if ok else 'NOT MET'}: {-points:+.2f} pt below always-long (target ≤ {MAX_DROP_POINTS:g}), "
        f"{100 * share:.1f}% sent long (≤ {100 * MAX_LONG_SHARE:.0f}%)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", nargs="+", help="thinking dataset files (JSONL, .gz ok)")
    parser.add_argument("--switcher", help="artifact to judge (default: train one on train+val first)")
    parser.add_argument("--out", help="where to write the trained artifact (without --switcher)")
    parser.add_argument("--config", help="training options JSON (without --switcher)")
    parser.add_argument(
        "--split", default="test", choices=("train", "val", "test"), help="questions to judge on"
    )
    parser.add_argument(
        "--short-retry",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="judge long answers cut at the token cap as asked again in short mode, as the gateway does "
        "(default: as the artifact was trained)",
    )
    parser.add_argument("--json", help="write the eval JSON here")
    parser.add_argument("--plot", help="write the accuracy-vs-cost PNG here")
    args = parser.parse_args()
    check_output_file("--json", args.json)
    check_output_file("--plot", args.plot)

    path = args.switcher
    if path is None:
        from router_models.thinkswitch.train import train_command

        path = args.out or tempfile.mkdtemp(prefix="thinkswitch-")
        train_command(argparse.Namespace(data=args.data, out=path, config=args.config))
    manifest = read_manifest(path)
    switcher = load_switcher(path)
    records = at_trained_cap(select_split(load_records(args.data), args.split), manifest)
    pred = switcher.predict([record.prompt for record in records])
    short_retry = switcher.short_retry if args.short_retry is None else args.short_retry
    results = evaluate(pred, records, manifest.get("taus", {}), switcher.default_tau, 1.0, short_retry)
    retry = "on" if short_retry else "off"
    print(f"\nswitcher {switcher.version} on the {args.split} split ({len(records)} questions, short retry: {retry})")
    if warning := in_sample_warning(records, manifest):
        print(warning)
    print(report(results, 1.0))
    for result in results:
        print(f"{result.name}: {verdict(result)}")
    if args.json:
        write_json(results, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        plot(results, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(Path(__file__).name, main))
