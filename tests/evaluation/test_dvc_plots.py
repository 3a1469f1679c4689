"""``dvc plots show`` works offline: its page carries vega inline, and shows every fold's curves."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# a script loaded from anywhere but the page itself (a CDN, another host)
REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", re.IGNORECASE)
CURVES = (
    "epoch,train_loss,val_loss,train_macro_f1,val_macro_f1\n1,2.0,2.2,0.1,0.1\n2,1.0,1.5,0.5,0.4\n"
)


def _template() -> tuple[str, Path]:
    """The repository's ``plots.html_template`` setting and the file it names (DVC resolves a
    relative path against ``.dvc/``)."""
    config = configparser.ConfigParser()
    config.read(REPO / ".dvc/config")
    setting = config.get("plots", "html_template", fallback=None)
    assert setting, ".dvc/config sets no plots.html_template: dvc plots show loads vega from a CDN"
    return setting, REPO / ".dvc" / setting


def test_the_page_template_carries_vega_and_loads_nothing_from_the_network():
    _, path = _template()
    page = path.read_text(encoding="utf8")
    assert "{plot_divs}" in page
    assert "{scripts}" not in page  # DVC fills it with the CDN tags
    assert not REMOTE_SCRIPT.search(page)
    for bundle in ("vega 5.", "vega-lite 5.", "vega-embed 6."):
        assert f"/* {bundle}" in page, f"{bundle} bundle missing"
    assert page.count("<script>") == 3


@pytest.mark.slow
def test_dvc_plots_show_renders_every_fold_offline(tmp_path):
    """The page ``dvc plots show`` writes for two folds: a chart per fold, no remote script."""
    setting, template = _template()
    dvc = [sys.executable, "-m", "dvc"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=tmp_path, env=env, check=True)
    with open(tmp_path / ".dvc/config", "a") as fh:
        fh.write(f"[plots]\n    html_template = {setting}\n")
    copy = tmp_path / ".dvc" / setting
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, copy)
    plots = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}))
    for fold in (0, 1):
        curve = tmp_path / f"reports/curves/fold_{fold}.csv"
        curve.parent.mkdir(parents=True, exist_ok=True)
        curve.write_text(CURVES)
    out = subprocess.run(
        [*dvc, "plots", "show", "-o", "page"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    page = (tmp_path / "page/index.html").read_text(encoding="utf8")
    assert not REMOTE_SCRIPT.search(page)
    for fold in (0, 1):
        chart = re.search(rf'<div id = "reports_curves_fold_{fold}_csv">(.*?)</div>', page, re.S)
        assert chart, f"no chart of fold {fold}"
        for column in ("train_loss", "val_loss", "train_macro_f1", "val_macro_f1"):
            assert column in chart.group(1)
    assert "vegaEmbed" in page
