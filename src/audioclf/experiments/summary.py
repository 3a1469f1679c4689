"""The closing summary of ``dvc repro``: what the run scored, where its plots and runs are, and
what to type next. The last stage (``export``) logs it, so it is the last thing the pipeline
prints before DVC's own lines.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from audioclf.io import read_json
from audioclf.tracking import Store, ui_hint

log = logging.getLogger(__name__)
HEADLINE = (("macro_f1", "macro-F1"), ("accuracy", "accuracy"), ("macro_map", "mAP"))


def headline(metrics: dict) -> str:
    """The headline test metrics with their bootstrap intervals (``reports/metrics.json``).

    >>> m = {"n": 146, "test": {"macro_f1": 0.5656, "accuracy": 0.78},
    ...      "test_ci": {"macro_f1": {"low": 0.4933, "high": 0.6195}}}
    >>> headline(m)
    'test macro-F1 0.566 [0.493, 0.620], accuracy 0.780 on 146 test files'
    """
    test, ci = metrics.get("test", {}), metrics.get("test_ci", {})
    parts = []
    for key, name in HEADLINE:
        if key not in test:
            continue
        interval = ci.get(key)
        bounds = f" [{interval['low']:.3f}, {interval['high']:.3f}]" if interval else ""
        parts.append(f"{name} {test[key]:.3f}{bounds}")
    line = "test " + ", ".join(parts)
    return line + (f" on {metrics['n']} test files" if "n" in metrics else "")


def closing_summary(metrics: dict, *, images: list[str], ui: list[str], exported: str) -> str:
    """The lines logged after the last stage.

    Args:
        metrics: ``reports/metrics.json``.
        images: the image plots ``dvc.yaml`` declares (shown by ``dvc plots show`` too).
        ui: how to open the MLflow runs (:func:`audioclf.tracking.ui_hint`).
        exported: the exported model file.
    """
    lines = [
        f"done: {headline(metrics)} (bootstrap intervals, evaluate.ci_level)",
        "  plots:   dvc plots show  -> dvc_plots/index.html (training curves, confusion matrix)",
        *([f"           {', '.join(images)}"] if images else []),
        *(f"  runs:    {u}" if i == 0 else f"           {u}" for i, u in enumerate(ui)),
        "  predict: audioclf predict <audio files or folders>   (the best fold in models/)",
        f"  export:  {exported} (ONNX Runtime; docs/deploy.md)",
        "  compare: audioclf show   (the experiments' table; audioclf report for one run)",
    ]
    return "\n".join(lines)


def image_plots(dvc_yaml: dict) -> list[str]:
    """The image files ``dvc.yaml`` declares as plots of its stages.

    >>> image_plots({"stages": {"evaluate": {"plots": ["a.csv", {"b.png": {"cache": False}}]}}})
    ['b.png']
    """
    names = [
        name
        for stage in dvc_yaml.get("stages", {}).values()
        for item in stage.get("plots", [])
        for name in ([item] if isinstance(item, str) else item)
    ]
    return [n for n in names if Path(n).suffix.lower() in (".png", ".jpg", ".jpeg", ".svg")]


def log_run_summary(
    metrics: Path, *, root: Path, store: Store, dataset: str, exported: Path
) -> str:
    """Log (and return) :func:`closing_summary` for the run whose test metrics are ``metrics``,
    in the repository at ``root`` (its ``dvc.yaml`` names the plots)."""
    dvc_yaml = (
        yaml.safe_load((root / "dvc.yaml").read_text()) if (root / "dvc.yaml").is_file() else {}
    )
    text = closing_summary(
        read_json(metrics),
        images=image_plots(dvc_yaml or {}),
        ui=ui_hint(store, dataset),
        exported=str(exported),
    )
    log.info("%s", text)
    return text
