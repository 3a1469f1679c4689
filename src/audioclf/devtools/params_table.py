"""The README's params table checked against ``params.yaml`` and the config dataclasses, so it cannot drift.

    audioclf params-table            # lists every disagreement; exit status 1 if there is one

The table (under ``## Parameters``) has one row per key or group of keys: the first
column names them in backticks with their full dotted path (``<name>`` or ``*``
matches any one key, ``model_params.<model>.*`` every model's), the second gives
their defaults in backticks, one per key, as YAML (or one for every key a pattern
matches; none where defaults vary). Checked: every default equals params.yaml's value
and the dataclass default of its section; every key of params.yaml is in some row;
every row names keys that exist.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
from pathlib import Path
from typing import Any

import yaml

from audioclf.cli import command
from audioclf.config.params import SECTIONS

log = logging.getLogger(__name__)
HEADING = "## Parameters"


def table_rows(readme: str) -> list[tuple[list[str], list[str]]]:
    """(keys, defaults) of each row of the table under :data:`HEADING`, as written in backticks."""
    text = readme.split(HEADING, 1)[1] if HEADING in readme else ""
    rows = []
    for line in text.splitlines()[1:]:
        if line.startswith("## "):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 3 or cells[0] in ("key", "---"):
            continue
        rows.append((re.findall(r"`([^`]+)`", cells[0]), re.findall(r"`([^`]+)`", cells[1])))
    return rows


def leaves(params: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value of every leaf of a params mapping."""
    out = {}
    for key, value in params.items():
        if isinstance(value, dict) and value:
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def pattern(key: str) -> re.Pattern:
    """A row's key as a pattern: ``<name>`` or ``*`` is any one key, a trailing ``.*`` anything below."""
    parts = re.split(r"(<[^>]+>|\*)", key)
    body = "".join(re.escape(p) if i % 2 == 0 else r"[^.]+" for i, p in enumerate(parts))
    return re.compile(body.removesuffix(r"[^.]+") + r".+" if key.endswith(".*") else body)


def dataclass_default(key: str) -> Any:
    """The default a section's config dataclass gives ``key`` (``dataclasses.MISSING`` outside the sections)."""
    section, *path = key.split(".")
    if section not in SECTIONS or not path:
        return dataclasses.MISSING
    node: Any = SECTIONS[section]()
    for part in path:
        node = getattr(node, part, dataclasses.MISSING)
    return list(node) if isinstance(node, tuple) else node


def problems(readme: str, params: dict) -> list[str]:
    """Every disagreement between the README's table, params.yaml and the dataclass defaults."""
    values, found = leaves(params), []
    covered: set[str] = set()
    for keys, defaults in table_rows(readme):
        if defaults and len(defaults) not in (1, len(keys)):
            found.append(f"row {keys}: {len(defaults)} defaults for {len(keys)} keys")
            continue
        for i, key in enumerate(keys):
            matched = [leaf for leaf in values if pattern(key).fullmatch(leaf)]
            covered.update(matched)
            if not matched:
                found.append(f"README names '{key}', which params.yaml lacks")
            if not defaults:
                continue
            stated = yaml.safe_load(defaults[min(i, len(defaults) - 1)])
            for leaf in matched:
                if values[leaf] != stated:
                    found.append(
                        f"README gives '{leaf}' the default {stated!r}; params.yaml has {values[leaf]!r}"
                    )
                code = dataclass_default(leaf)
                if code is not dataclasses.MISSING and code != values[leaf]:
                    found.append(
                        f"params.yaml gives '{leaf}' {values[leaf]!r}; its dataclass default is {code!r}"
                    )
    found += [
        f"params.yaml key '{leaf}' is in no row of the README's table"
        for leaf in values
        if leaf not in covered
    ]
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--readme", type=Path, default=Path("README.md"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    found = problems(args.readme.read_text(), yaml.safe_load(args.params.read_text()))
    for problem in found:
        log.error("params table: %s", problem)
    if not found:
        log.info("params table: the README, params.yaml and the config defaults agree")
    return 1 if found else 0


if __name__ == "__main__":
    command(main)
