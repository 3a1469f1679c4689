"""Consistency of the DVC pipeline with the code and params, for CI.

``audioclf check`` exits non-zero, listing each problem, when

* a params key named in ``dvc.yaml`` is missing from ``params.yaml``;
* a key of ``params.yaml`` is read by no stage (a dead flag);
* the committed ``dvc.lock`` no longer matches the code, params or commands.

On a fresh clone the stage outputs are absent; ``dvc status`` then reports them
(and downstream deps on them) as deleted or not in cache, which is expected and
ignored. Modified deps, changed params and changed commands are not.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from pathlib import Path

import yaml

from audioclf.cli import command, parser
from audioclf.errors import MissingInputError, UserError

log = logging.getLogger(__name__)


def _declared(dvc_yaml: dict) -> dict[str, list[str]]:
    """Stage -> params keys it declares (only keys from the default params.yaml)."""
    out = {}
    for name, stage in dvc_yaml.get("stages", {}).items():
        keys = []
        for item in stage.get("params", []):
            if isinstance(item, str):
                keys.append(item)
            elif isinstance(item, dict) and "params.yaml" in item:
                keys.extend(item["params.yaml"])
        out[name] = keys
    return out


def _has_key(params: dict, dotted: str) -> bool:
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _leaves(params: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in params.items():
        name = f"{prefix}{key}"
        keys.extend(_leaves(value, f"{name}.") if isinstance(value, dict) and value else [name])
    return keys


TEMPLATE = re.compile(r"\$\{([^}]+)\}")


def resolve(key: str, params: dict) -> str:
    """A declared key with DVC's ``${name}`` templates filled from params.yaml, as DVC fills them.

    >>> resolve("model_params.${model}", {"model": "cnn"})
    'model_params.cnn'
    """

    def value(m: re.Match) -> str:
        node = params
        for part in m.group(1).split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return str(node)

    return TEMPLATE.sub(value, key)


def _covers(key: str) -> re.Pattern:
    """The params.yaml leaves a declared key covers: itself and below; a template matches any value
    (``model_params.${model}`` covers every model's params, since ``-S model=...`` selects any)."""
    parts = TEMPLATE.split(key)
    body = "".join(re.escape(p) if i % 2 == 0 else r"[^.]+" for i, p in enumerate(parts))
    return re.compile(rf"{body}(\..*)?")


def params_problems(dvc_yaml: dict, params: dict) -> list[str]:
    """Declared keys missing from params.yaml, and params.yaml keys no stage declares."""
    declared = _declared(dvc_yaml)
    problems = [
        f"stage '{stage}' declares param '{key}', which params.yaml lacks"
        for stage, keys in declared.items()
        for key in keys
        if not _has_key(params, resolve(key, params))
    ]
    covers = [_covers(k) for keys in declared.values() for k in keys]
    for leaf in _leaves(params):
        if not any(c.fullmatch(leaf) for c in covers):
            problems.append(
                f"params.yaml key '{leaf}' is declared by no stage in dvc.yaml (dead flag?)"
            )
    return problems


EXPECTED_ON_CLEAN_CLONE = {"deleted", "not in cache"}


def lock_problems(status: dict) -> list[str]:
    """Problems in ``dvc status --json`` output that a missing output does not explain."""
    problems = []
    for stage, changes in status.items():
        for change in changes:
            if isinstance(change, str):  # "changed command", "always changed", ...
                if change != "always changed":  # a stage declared so (source) always is
                    problems.append(f"{stage}: {change}")
                continue
            for kind, items in change.items():
                for path, state in items.items():
                    if isinstance(state, dict):  # params file -> {key: state}
                        problems.extend(
                            f"{stage}: param '{k}' {v} since dvc.lock" for k, v in state.items()
                        )
                    elif state not in EXPECTED_ON_CLEAN_CLONE:
                        problems.append(
                            f"{stage}: {kind.replace('changed ', '')[:-1]} '{path}' {state} since dvc.lock"
                        )
    return problems


def dvc_status(repo: Path) -> dict:
    out = subprocess.run(["dvc", "status", "--json"], cwd=repo, capture_output=True, text=True)
    if out.returncode != 0:
        raise UserError(f"dvc status failed in {repo}: {out.stderr.strip()}")
    text = out.stdout.strip()
    return json.loads(text) if text else {}


def check(repo: Path) -> list[str]:
    for name in ("dvc.yaml", "params.yaml"):
        if not (repo / name).is_file():
            raise MissingInputError(f"{repo} has no {name}: run the check from the repository root")
    dvc_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())
    params = yaml.safe_load((repo / "params.yaml").read_text())
    return params_problems(dvc_yaml, params) + lock_problems(dvc_status(repo))


def main(argv: list[str] | None = None) -> int:
    """``audioclf check [REPO]``; exit status 1 when a problem is found."""
    ap = parser(__doc__, prog="audioclf check", params=False)
    ap.add_argument("repo", nargs="?", default=".", help="the repository (default: here)")
    problems = check(Path(ap.parse_args(argv).repo).resolve())
    for problem in problems:
        log.error("pipeline check: %s", problem)
    if problems:
        log.error(
            "pipeline check FAILED: run 'dvc repro' and commit dvc.lock, or fix dvc.yaml/params.yaml"
        )
        return 1
    log.info("pipeline check: dvc.yaml, params.yaml and dvc.lock agree")
    return 0


if __name__ == "__main__":
    command(main)
