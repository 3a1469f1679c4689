"""download: fetch or generate the dataset's audio, write its manifest and the data's profile."""

from pathlib import Path

from audioclf.cli import parser, run, stack_imports

with stack_imports():  # a broken torch/torchaudio install: one line naming the fix
    from audioclf.config import load_params
    from audioclf.data.datasets import prepare
    from audioclf.data.manifest import write_manifest
    from audioclf.data.profile import data_profile, log_profile
    from audioclf.io import atomic_path, repo_root, write_json


def main(argv=None) -> Path:
    ap = parser(__doc__)
    ap.add_argument("--out", type=Path, required=True, help="folder for the audio and manifest.csv")
    ap.add_argument("--profile", required=True, help="rates, durations, classes, groups (JSON)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    with atomic_path(args.out) as tmp:
        tmp.mkdir()
        entries = prepare(params.dataset, params.located(repo_root()).data, params.seed, tmp)
        write_manifest(entries, tmp / "manifest.csv")
    profile = data_profile(entries)
    log_profile(profile)
    write_json(profile, args.profile)
    return args.out / "manifest.csv"


if __name__ == "__main__":
    run(main)
