"""``emodb``: the Berlin Database of Emotional Speech (EmoDB).

Burkhardt et al., "A Database of German Emotional Speech", Interspeech 2005;
http://emodb.bilderbar.info. 535 utterances by 10 actors (5 female, 5 male) reading
10 German sentences in 7 emotions, 16 kHz mono in the official zip's ``wav/``.
Free for research use (see the site for terms).

File names follow ``SSTTTEV.wav``, e.g. ``03a01Fa.wav``: speaker ``03``, text
``a01``, emotion ``F`` (happiness), version ``a``. The speaker is the group: a model
must recognise emotions of voices it has never heard.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from audioclf.data.datasets.source import (
    Clip,
    DatasetError,
    describe_all,
    open_archive,
    record_source,
)
from audioclf.data.manifest import Entry

if TYPE_CHECKING:
    from audioclf.config.data import DataConfig

# the site serves one fixed zip, but it could not be fetched where this was written:
# no digest is pinned. Pin one with data.emodb.sha256 (source.json records the zip's).
PINNED_SHA256 = None
EMOTIONS = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
NAME = re.compile(
    r"(?P<speaker>\d{2})(?P<text_id>[a-z]\d{2})(?P<emotion>[A-Z])(?P<version>[a-z])\.wav"
)


def parse_name(name: str) -> tuple[str, str, str]:
    """``(label, speaker, text_id)`` of an EmoDB file name.

    >>> parse_name("03a01Fa.wav")
    ('happiness', '03', 'a01')

    Raises:
        ValueError: if ``name`` does not follow the ``SSTTTEV.wav`` scheme.
    """
    m = NAME.fullmatch(name)
    if m is None or m["emotion"] not in EMOTIONS:
        raise ValueError(
            f"not an EmoDB file name (SSTTTEV.wav with emotion in {''.join(EMOTIONS)}): {name!r}"
        )
    return EMOTIONS[m["emotion"]], m["speaker"], m["text_id"]


def prepare(data: DataConfig, seed: int, out_dir: Path) -> list[Entry]:
    """Copy the utterances of the archive's ``wav/`` into ``out_dir/audio`` and describe them.

    Args:
        data: data params; ``data.emodb`` selects the URL and checksum.
        seed: unused (the dataset is fixed); part of every adapter's signature.
        out_dir: empty folder that receives ``audio/``, ``source.json``, ``unreadable.json``.

    Returns:
        One entry per utterance: label = emotion, group = speaker, extras ``speaker``, ``text_id``.
    """
    cfg = data.emodb
    with open_archive(data, "emodb", cfg.url, cfg.sha256 or PINNED_SHA256, cfg.hosts) as archive:
        members = [
            n
            for n in archive.names
            if PurePosixPath(n).parent.name == "wav" and n.lower().endswith(".wav")
        ]
        if not members:
            raise DatasetError(
                f"{archive.path} has no wav/*.wav: is it the EmoDB archive? "
                f"Check data.archive or data.emodb.url"
            )
        clips, skipped = [], []
        for member in members:
            name = PurePosixPath(member).name
            try:
                label, speaker, text_id = parse_name(name)
            except ValueError as exc:
                skipped.append({"path": member, "reason": str(exc)})
                continue
            dest = archive.extract(member, out_dir / "audio", name)
            if dest is not None:
                extra = {"speaker": speaker, "text_id": text_id}
                clips.append(Clip(dest, label=label, group=speaker, extra=extra))
        record_source(out_dir, archive, cfg.url)
    return describe_all(clips, out_dir, skipped + archive.refused)
