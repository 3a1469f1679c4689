"""export: the selected model (best validation macro-F1 over the folds) as ONNX, with a JSON of its
labels, input and front-end params; checked against torch on the spot. A scikit-learn head or a
train.norm=group model has no ONNX graph here: the JSON says why."""

from pathlib import Path

from audioclf.cli import parser, run
from audioclf.deploy.model import from_checkpoint, select_checkpoint
from audioclf.deploy.onnx_export import export_onnx, no_onnx, not_exported
from audioclf.models.checkpoint import load_checkpoint


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--models", type=Path, required=True, help="folder of fold_<n>/best.pt")
    ap.add_argument("--split", type=Path, required=True, help="names the folds (fold_<n>/)")
    ap.add_argument("--out", type=Path, required=True, help="the ONNX graph")
    ap.add_argument("--meta", type=Path, required=True, help="labels and front-end (JSON)")
    args = ap.parse_args(argv)
    selected = select_checkpoint(args.models, args.split)
    ckpt = load_checkpoint(selected)[1]
    if reason := no_onnx(ckpt):
        return not_exported(ckpt, reason, args.meta)
    return export_onnx(from_checkpoint(selected), args.out, args.meta)


if __name__ == "__main__":
    run(main)
