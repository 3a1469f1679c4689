"""export: the selected model (best validation macro-F1 over the folds) as ONNX, with a JSON of its
labels, input and front-end params; checked against torch on the spot. A scikit-learn head or a
train.norm=group model has no ONNX graph here: the JSON says why."""

from pathlib import Path

from audioclf.cli import parser, run
from audioclf.config import load_params
from audioclf.deploy.export import export
from audioclf.experiments.summary import log_run_summary
from audioclf.io import repo_root
from audioclf.tracking import resolve_store


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--models", type=Path, required=True, help="folder of fold_<n>/best.pt")
    ap.add_argument("--split", type=Path, required=True, help="names the folds (fold_<n>/)")
    ap.add_argument("--out", type=Path, required=True, help="the ONNX graph")
    ap.add_argument("--meta", type=Path, required=True, help="labels and front-end (JSON)")
    ap.add_argument("--metrics", type=Path, help="the test metrics: the run's closing summary")
    args = ap.parse_args(argv)
    result = export(args.models, args.out, args.meta, split_dir=args.split)
    if args.metrics:  # the last stage: the pipeline ends with its scores and where to look next
        root, dataset = repo_root(), load_params(args.params).dataset
        log_run_summary(
            args.metrics, root=root, store=resolve_store(root), dataset=dataset, exported=args.out
        )
    return result


if __name__ == "__main__":
    run(main)
