"""Config files of `switchyard train --config`: a JSON or YAML object of config fields, checked against the
fields' types before any data is read."""

from __future__ import annotations

import json
import math
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from router_models.errors import InputError


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The object of a JSON file, or of a YAML one (any name but `.json`); an empty file is `{}`."""
    text = Path(path).read_text()
    if not text.strip():
        return {}
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        if Path(path).suffix.lower() == ".json":
            raise InputError(
                f"{path}: not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
            ) from None
        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as yaml_error:
            mark = getattr(yaml_error, "problem_mark", None)
            at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
            problem = getattr(yaml_error, "problem", None) or "not parseable"
            raise InputError(f"{path}: not valid JSON or YAML ({problem}{at})") from None
    if not isinstance(values, dict):
        raise InputError(f"{path}: expected an object of config fields, got {type(values).__name__}")
    return values


def _matches(value: Any, hint: Any) -> bool:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, option) for option in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, list) and all(_matches(item, get_args(hint)[0]) for item in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def _describe(hint: Any) -> str:
    if get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_describe(option) for option in get_args(hint))
    if get_origin(hint) is list:
        return f"a list of {_describe(get_args(hint)[0]).split(' ', 1)[-1]}s"
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, "an object")


def check_types(cls: type, values: dict[str, Any], where: str) -> None:
    """Raise `InputError` naming the first of `values` whose type is not its field's in dataclass `cls`."""
    hints = get_type_hints(cls)
    for name, value in values.items():
        if name in hints and not _matches(value, hints[name]):
            raise InputError(f"{where}: {name} must be {_describe(hints[name])}, got {value!r}")


def at_least(config: Any, minimum: float, *names: str) -> list[tuple[bool, str]]:
    """(ok, message) checks, for `refuse_first`, that the fields `names` of `config` are finite and at least
    `minimum`."""
    checks = []
    for name in names:
        value = getattr(config, name)
        what = "" if isinstance(value, int) else "a finite number "
        checks.append((minimum <= value < math.inf, f"{name} must be {what}at least {minimum:g}, got {value}"))
    return checks


def above_zero(config: Any, *names: str) -> list[tuple[bool, str]]:
    """(ok, message) checks, for `refuse_first`, that the fields `names` of `config` are finite and above 0."""
    return [(0 < (value := getattr(config, name)) < math.inf, f"{name} must be a finite number above 0, got {value}")
            for name in names]


def refuse_first(checks: Iterable[tuple[bool, str]]) -> None:
    """Raise `ValueError` with the message of the first failed (ok, message) check of a config's ranges."""
    if problem := next((message for ok, message in checks if not ok), None):
        raise ValueError(problem)
