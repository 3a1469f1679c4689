"""audit: fail the pipeline if any fold leaks (shared groups, duplicate or near-duplicate audio)."""

from pathlib import Path

from audioclf.cli import parser, run, stack_imports

with stack_imports():  # a broken torch/torchaudio install: one line naming the fix
    from audioclf.config import load_params
    from audioclf.data.audit import audit_with, conclude
    from audioclf.data.split import read_folds
    from audioclf.io import write_json


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument(
        "--audio-root", type=Path, required=True, help="what manifest paths are relative to"
    )
    ap.add_argument("--split", type=Path, required=True)
    ap.add_argument("--test", type=Path, required=True)
    ap.add_argument("--report", required=True, help="leakage report (JSON)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    folds = read_folds(args.split, args.test)
    report = audit_with(folds, args.audio_root, params.audit, leaky=params.split.leaky)
    write_json(report, args.report)
    conclude(report, args.report)  # fails the stage on leakage, after writing the report
    return report


if __name__ == "__main__":
    run(main)
