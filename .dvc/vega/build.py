"""Write dvc_plots.html, DVC's page template (``plots.html_template`` in .dvc/config) with the
vega, vega-lite and vega-embed bundles inline, so that ``dvc plots show`` renders offline.

    npm pack vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0
    python .dvc/vega/build.py vega-5.33.1.tgz vega-lite-5.23.0.tgz vega-embed-6.29.0.tgz
"""

import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).parent
# package -> its minified browser bundle inside the npm tarball; this order: vega-embed needs both
BUNDLES = {
    "vega": "package/build/vega.min.js",
    "vega-lite": "package/build/vega-lite.min.js",
    "vega-embed": "package/build/vega-embed.min.js",
}


def main(tarballs: list[str]) -> None:
    by_name = {Path(t).name.rsplit("-", 1)[0]: Path(t) for t in tarballs}
    scripts = []
    for name, member in BUNDLES.items():
        tgz = by_name[name]
        with tarfile.open(tgz) as tar:
            js = tar.extractfile(member).read().decode("utf8")
        if "</script" in js:  # it would end the inline script early
            raise ValueError(f"{tgz}: {member} holds '</script'")
        version = tgz.name.removesuffix(".tgz").rsplit("-", 1)[1]
        licence = f"{name} {version}, BSD-3-Clause, University of Washington Interactive Data Lab"
        scripts.append(f"<script>/* {licence} (.dvc/vega/LICENSE) */\n{js}\n</script>")
    page = (HERE / "page.html").read_text().replace("{vega_bundles}", "\n".join(scripts))
    (HERE / "dvc_plots.html").write_text(page)


if __name__ == "__main__":
    main(sys.argv[1:])
