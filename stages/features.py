"""features: the model's front-end on every decodable file of the manifest, from the shared store;
``auto`` values chosen from the data's profile, and warnings where the front-end does not fit it."""

from pathlib import Path

from audioclf.cli import parser, run, stack_imports

with stack_imports():  # a broken torch/torchaudio install: one line naming the fix
    from audioclf.config import load_params
    from audioclf.data.manifest import read_dropped, read_manifest
    from audioclf.features.extract import CoverageError, extract_features, reproducible
    from audioclf.features.frontend_fit import fit_frontend
    from audioclf.io import repo_root, write_json


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="the feature table folder")
    ap.add_argument("--report", required=True, help="coverage and skipped files (JSON)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    entries, dropped = read_manifest(args.manifest), read_dropped(args.manifest)  # left out
    cfg, frontend = fit_frontend(params.requested_features, params.features, entries, params.model)
    store = repo_root() / cfg.store_dir  # shared by experiments run in copies of the repo
    try:
        report = extract_features(
            entries, args.manifest.parent, cfg, args.out, store_dir=store, dropped=dropped
        )
    except CoverageError as exc:  # the reasons stay visible; no table is published
        write_json({**exc.report, "frontend": frontend}, args.report)
        raise
    write_json({**reproducible(report), "frontend": frontend}, args.report)
    return report


if __name__ == "__main__":
    run(main)
