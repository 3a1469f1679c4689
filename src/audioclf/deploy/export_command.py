"""``audioclf export --format onnx``: the selected model as ONNX plus its labels and front-end (JSON).

The ``export`` stage runs it on the workspace's ``models/`` (the best fold by validation
macro-F1); ``--model`` takes any source :func:`audioclf.deploy.model.load_model` does.
"""

from __future__ import annotations

from pathlib import Path

from audioclf.cli import parser
from audioclf.deploy.model import load_model
from audioclf.deploy.onnx_export import export_onnx

FORMATS = ("onnx",)


def export_main(argv: list[str] | None = None) -> dict:
    """Export; returns the JSON written beside the model."""
    ap = parser(__doc__)
    ap.add_argument("--format", choices=FORMATS, default="onnx", help="the exchange format")
    ap.add_argument(
        "--model", default="models", help="checkpoint, models/ folder or MLflow model URI"
    )
    ap.add_argument(
        "--split", type=Path, default=Path("data/split"), help="names the folds of models/"
    )
    ap.add_argument("--out", type=Path, default=Path("exported/model.onnx"), help="the graph")
    ap.add_argument(
        "--meta", type=Path, default=None, help="labels and front-end (default: --out as .json)"
    )
    args = ap.parse_args(argv)
    model = load_model(args.model, split_dir=args.split)
    return export_onnx(model, args.out, args.meta or args.out.with_suffix(".json"))
