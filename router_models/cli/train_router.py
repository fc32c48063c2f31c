"""The router half of `switchyard train`: build the config, split the data, fit, save."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from router_models.artifact import prepare_out
from router_models.base import Router
from router_models.cli import refuse_given
from router_models.configs import check_types, read_config_file
from router_models.data import RoutingTable, SplitSpec, default_candidates, read_records, split_records
from router_models.errors import InputError

MIN_QUERIES = 100  # fewer training queries and a learned router's choices are mostly noise: warned about
# flags that set the config field of their name, where the kind's config has it (no default: the config's)
CONFIG_FLAGS = ("epochs", "block_size", "max_query_tokens", "max_train_queries", "seed", "k")


def build_config(cls: type[Router], args: argparse.Namespace) -> Any:
    """The kind's config dataclass: defaults, then --config FILE, then the flags that the kind has; its types
    and ranges checked before any data is read (`InputError` naming the file or the flag)."""
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    values: dict[str, Any] = {}
    if args.config:
        loaded = read_config_file(args.config)
        unknown = set(loaded) - fields
        if unknown:
            raise InputError(f"{args.config}: unknown {cls.kind} config fields {sorted(map(str, unknown))}")
        check_types(cls.config_class, loaded, args.config)
        values = loaded
        make_config(cls, values, args.config)
    refuse_given(args, {flag: None for flag in CONFIG_FLAGS if flag not in fields},
                 f"does not apply to --kind {cls.kind}")
    if not cls.resumable:
        refuse_given(args, {"resume": False}, f"does not apply to --kind {cls.kind}: it keeps no checkpoints")
    flags = {flag: getattr(args, flag) for flag in CONFIG_FLAGS if getattr(args, flag) is not None}
    for flag, value in flags.items():  # the flag a problem comes from, where one alone has it
        make_config(cls, values | {flag: value}, f"--{flag.replace('_', '-')}")
    return make_config(cls, values | flags, " with ".join(f"--{flag.replace('_', '-')}" for flag in flags))


def make_config(cls: type[Router], values: dict[str, Any], where: str) -> Any:
    """`cls`'s config of `values` (well-typed); `InputError` "WHERE: problem" where its ranges refuse them."""
    try:
        return cls.config_class(**values)
    except ValueError as error:
        raise InputError(f"{where}: {error}") from None


def training_tables(args: argparse.Namespace) -> tuple[RoutingTable, RoutingTable | None]:
    if args.protocol == "all" and args.holdout is not None:
        raise InputError("--holdout applies to --protocol leave-one-out only (--protocol all trains on every line)")
    spec = None if args.protocol == "all" else SplitSpec(args.protocol, args.holdout)  # type: ignore[arg-type]
    records = read_records(args.data)
    if not records:
        raise InputError(f"no data lines in {', '.join(args.data)}")
    if args.candidates:
        candidates = [name.strip() for name in args.candidates.split(",") if name.strip()]
    else:
        candidates = default_candidates(records)
    if repeated := sorted({c for c in candidates if candidates.count(c) > 1}):
        raise InputError(f"candidates named more than once: {', '.join(repeated)}")
    if len(candidates) < 2:
        raise InputError(f"routing needs at least 2 candidates, got {', '.join(candidates) or 'none'}")
    if spec is None:
        return RoutingTable.build(records, candidates), None
    parts = split_records(records, spec)
    val = RoutingTable.build(parts["val"], candidates)
    return RoutingTable.build(parts["train"], candidates), (val if len(val) else None)


def check_training_table(train: RoutingTable) -> None:
    """Refuse a table with no query to learn from; warn where it is too small or its labels never vary."""
    if not len(train):
        why = (
            f"all {train.dropped} lines of the training part lack a candidate's score"
            if train.dropped
            else "the split leaves no line for training"
        )
        raise InputError(f"no training queries for candidates {', '.join(train.candidates)}: {why}")
    if len(train) < MIN_QUERIES:
        print(f"warning: only {len(train)} training queries: the router's choices will be mostly noise",
              file=sys.stderr)
    labels = train.labels
    if (labels == labels[0]).all():
        print("warning: every training query has the same routing labels: the router can only learn one "
              "fixed choice", file=sys.stderr)


def train_command(args: argparse.Namespace) -> int:
    from router_models.registry import router_class

    cls = router_class(args.kind)
    config = build_config(cls, args)
    train, val = training_tables(args)
    print(
        f"{args.kind}: {len(train)} training and {len(val) if val else 0} validation queries, "
        f"candidates {', '.join(train.candidates)}"
        + (f" ({train.dropped} lines lacking a candidate's score dropped)" if train.dropped else "")
    )
    check_training_table(train)
    out = Path(args.out)
    prepare_out(out, cls.kind, args.force)
    workdir = out / "checkpoint"
    start = time.perf_counter()
    router = cls.fit(train, config, val, workdir=workdir, resume=args.resume, progress=not args.quiet)
    manifest = router.save(out)
    shutil.rmtree(workdir, ignore_errors=True)  # finished: the artifact is all that is needed
    print(
        f"wrote {out} (kind {manifest.kind}, version {manifest.version}) "
        f"in {time.perf_counter() - start:.0f} s"
    )
    return 0
