"""source: fingerprint the local copy of a real dataset (``data.archive``), so that ``download``
reruns when its files change; DVC runs this stage every time (``always_changed``)."""

from pathlib import Path

from audioclf.cli import parser, run, stack_imports

with stack_imports():  # a broken torch/torchaudio install: one line naming the fix
    from audioclf.config import load_params
    from audioclf.data.datasets.archive import require_source
    from audioclf.io import repo_root, write_json


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--out", type=Path, required=True, help="the fingerprint (JSON)")
    args = ap.parse_args(argv)
    archive = load_params(args.params).data.archive  # as written: the report is machine-free
    found = require_source(repo_root() / Path(archive).expanduser(), archive) if archive else {}
    report = {"archive": archive, **found}
    write_json(report, args.out)
    return report


if __name__ == "__main__":
    run(main)
