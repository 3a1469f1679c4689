"""Typed, validated configuration objects built from YAML mappings (the bottom of the config package).

:func:`build` turns a mapping into a frozen dataclass, rejecting unknown keys and values
of the wrong type with messages that name the dotted key; each dataclass's
``__post_init__`` checks ranges with :func:`check` and :func:`choice`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any

from audioclf.errors import UserError


class ParamsError(UserError, ValueError):
    """A params key is unknown, missing or holds a bad value."""


def check(ok: bool, key: str, message: str) -> None:
    """Raise :class:`ParamsError` naming ``key`` unless ``ok``."""
    if not ok:
        raise ParamsError(f"params: '{key}' {message}")


def build(cls: type, raw: Any, key: str) -> Any:
    """Build dataclass ``cls`` from ``raw``, rejecting unknown keys and wrong types.

    Args:
        cls: a dataclass whose field annotations describe the accepted values.
        raw: the mapping read from YAML (``None`` means all defaults).
        key: dotted path of ``raw`` inside params.yaml, used in messages.

    Returns:
        An instance of ``cls``; its ``__post_init__`` checks value ranges.
    """
    raw = {} if raw is None else raw
    check(isinstance(raw, dict), key, f"must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    check(
        not unknown,
        f"{key}.{unknown[0]}" if unknown else key,
        f"is not a known key; allowed keys under '{key}': {', '.join(names)}",
    )
    values = {}
    for f in dataclasses.fields(cls):
        sub = f"{key}.{f.name}" if key else f.name
        if f.name in raw:
            values[f.name] = coerce(hints[f.name], raw[f.name], sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ParamsError(f"params: '{sub}' is required but missing")
    return cls(**values)


def coerce(hint: Any, value: Any, key: str) -> Any:
    """``value`` checked against the annotation ``hint`` (YAML ints accepted as floats), or ParamsError."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            check(type(None) in args, key, "must not be null")
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return coerce(inner[0], value, key)
        for alternative in inner:  # e.g. ``int | str``, a number or ``auto``: the first that fits
            try:
                return coerce(alternative, value, key)
            except ParamsError:
                if alternative is float and isinstance(value, float):
                    raise  # a number of the right kind, but wrong (``inf``): say why
                continue
        kinds = " or ".join(_KIND_NAMES.get(a, getattr(a, "__name__", str(a))) for a in inner)
        raise ParamsError(f"params: '{key}' must be {kinds}, got {value!r}")
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)
    if origin is tuple:
        check(isinstance(value, (list, tuple)), key, f"must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        check(len(value) == len(args), key, f"must have {len(args)} items, got {value!r}")
        return tuple(
            coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if hint is float:
        check(
            isinstance(value, (int, float)) and not isinstance(value, bool),
            key,
            f"must be a number, got {value!r}",
        )
        check(math.isfinite(value), key, f"must be a finite number, got {value!r}")
        return float(value)
    if hint is int:
        check(
            isinstance(value, int) and not isinstance(value, bool),
            key,
            f"must be an integer, got {value!r}",
        )
        return value
    if hint is bool:
        check(isinstance(value, bool), key, f"must be true or false, got {value!r}")
        return value
    if hint is str:
        check(isinstance(value, str), key, f"must be a string, got {value!r}")
        return value
    if hint is Any:
        return value
    raise TypeError(f"unsupported annotation {hint!r} for {key}")


_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


# the most parameters a model's size fields may ask for: 4 GB of float32 weights, 16 GB once
# training adds gradients and Adam's two moments (the largest model here, AST, has 87 million)
MAX_PARAMETERS = 1_000_000_000
TRAIN_BYTES_PER_PARAMETER = 16  # float32 weight, gradient and Adam's two moments
CGROUP_LIMIT = "/sys/fs/cgroup/memory.max"  # a container's memory, where cgroup v2 sets one


def memory_bytes() -> int | None:
    """The memory this machine (or the container it runs in) holds, or None where unknown.

    Physical memory from ``sysconf``, lowered to the cgroup v2 limit where one is set.
    """
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return None
    try:
        limit = Path(CGROUP_LIMIT).read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def at_most(value: float, limit: float, key: str, why: str) -> None:
    """Check a size-like value against its upper bound, naming the key, the bound and ``why``.

    >>> try:
    ...     at_most(10**9, 10**5, "evaluate.bootstrap", "resamples per metric")
    ... except ParamsError as exc:
    ...     print(exc)
    params: 'evaluate.bootstrap' must be <= 100000 (resamples per metric), got 1000000000
    """
    check(value <= limit, key, f"must be <= {limit} ({why}), got {value}")


def fits_memory(nbytes: float, key: str, what: str, fix: str) -> None:
    """Check that ``nbytes`` (what ``key`` asks to hold at once: ``what``) fits in this machine's
    memory (:func:`memory_bytes`), naming both sizes and ``fix``; no check where it is unknown."""
    memory = memory_bytes()
    check(
        memory is None or nbytes <= memory,
        key,
        f"asks for about {nbytes / 1e9:.3g} GB at once ({what}), more than this machine's "
        f"{(memory or 0) / 1e9:.3g} GB of memory; {fix}",
    )


def parameters_at_most(count: float, key: str) -> None:
    """Check a model's estimated parameter count against :data:`MAX_PARAMETERS`."""
    check(
        count <= MAX_PARAMETERS,
        key,
        f"asks for about {count:.3g} parameters, above {MAX_PARAMETERS:.0e} "
        f"({MAX_PARAMETERS * TRAIN_BYTES_PER_PARAMETER / 1e9:g} GB to train in float32 with "
        f"Adam); choose smaller widths",
    )


def trainable_in_memory(count: float, key: str) -> None:
    """Check that training a model of ``count`` parameters (the one ``model`` names) fits in this
    machine's memory: float32 weights, gradients and Adam's two moments."""
    fits_memory(
        count * TRAIN_BYTES_PER_PARAMETER,
        key,
        f"{count:.3g} parameters to train in float32 with Adam",
        "choose smaller widths",
    )


def choice(value: str, choices: typing.Iterable[str], key: str) -> None:
    """Check that ``value`` is one of ``choices``, naming them if not."""
    choices = sorted(choices)
    check(value in choices, key, f"is {value!r}; allowed values: {', '.join(choices)}")


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested params to dotted keys, e.g. ``{"train.lr": 0.001}``."""
    flat = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
