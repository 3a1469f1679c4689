"""An overlapping-entry zip bomb: members that share one compressed kernel, each under the ratio
cap, that together expand far beyond it. Refused member by member, and capped as a whole."""

import random
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from audioclf.data.datasets import DATASETS
from audioclf.data.datasets.archive import Archive, DatasetError, Limits


def _kernel(size: int, run: int = 200) -> bytes:
    """``size`` bytes that deflate about 84-fold: runs of ``run`` equal random bytes."""
    rng = random.Random(0)
    return b"".join(bytes([rng.randrange(256)]) * run for _ in range(size // run))


def overlapping_zip(names: list[str], kernel: bytes, prefix: list[tuple[str, bytes]] = ()) -> bytes:
    """A zip whose members all end in one shared deflate stream of ``kernel``.

    Member i's data is a stored deflate block quoting member i+1's local header, then member
    i+1's data (as in D. Fifield's "A better zip bomb", 2019): member i expands to the headers
    after it plus ``kernel``, and every member's own ratio stays about the kernel's. ``prefix``
    members are ordinary ones, written first.
    """
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    shared = comp.compress(kernel) + comp.flush()

    def header(name: bytes, crc: int, csize: int, usize: int) -> bytes:
        fields = (zipfile.stringFileHeader, 20, 0, 0, 8, 0, 0x21, crc, csize, usize, len(name), 0)
        return struct.pack(zipfile.structFileHeader, *fields) + name

    # from the last member back: each member's output is the headers after it plus the kernel
    infos, out, data = [], kernel, shared
    for name in reversed([n.encode() for n in names]):
        crc = zlib.crc32(out)
        head = header(name, crc, len(data), len(out))
        infos.append((name, crc, len(data), len(out), head))
        quote = struct.pack("<BHH", 0, len(head), 0xFFFF ^ len(head))  # a stored block of head
        out, data = head + out, quote + head + data
    infos.reverse()
    body = bytearray()
    central = bytearray()
    for name, payload in prefix:  # ordinary members, deflated on their own
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        packed = c.compress(payload) + c.flush()
        crc = zlib.crc32(payload)
        central += _central(name.encode(), crc, len(packed), len(payload), len(body))
        body += header(name.encode(), crc, len(packed), len(payload)) + packed
    start = len(body)
    for i, (name, crc, csize, usize, head) in enumerate(infos):
        central += _central(name, crc, csize, usize, len(body))
        body += head
        if i + 1 < len(infos):  # the quote of the next header, which follows it in the file
            nxt = infos[i + 1][4]
            body += struct.pack("<BHH", 0, len(nxt), 0xFFFF ^ len(nxt))
        else:
            body += shared
    assert body[start:].endswith(shared)
    count = len(prefix) + len(infos)
    end = struct.pack(
        zipfile.structEndArchive, zipfile.stringEndArchive, 0, 0, count, count,
        len(central), len(body), 0,
    )  # fmt: skip
    return bytes(body + central + end)


def _central(name: bytes, crc: int, csize: int, usize: int, offset: int) -> bytes:
    fields = (zipfile.stringCentralDir, 20, 3, 20, 0, 0, 8, 0, 0x21, crc, csize, usize)
    tail = (len(name), 0, 0, 0, 0, 0o100644 << 16, offset)
    return struct.pack(zipfile.structCentralDir, *fields, *tail) + name


N, KERNEL = 24, 256 << 10


@pytest.fixture
def bomb(tmp_path, audio) -> Path:
    """24 members of 256 KiB each (6 MiB) from a zip of ~4 KB of shared data, beside real audio."""
    real = [("top/birds/a.wav", audio.wav()), ("top/frogs/b.wav", audio.wav(freq=900.0))]
    names = [f"top/birds/bomb{i:02d}.wav" for i in range(N)]
    path = tmp_path / "bomb.zip"
    path.write_bytes(overlapping_zip(names, _kernel(KERNEL), real))
    return path


def test_the_crafted_zip_is_what_it_claims(bomb):
    """Python 3.11's zipfile reads every member in full, each under the ratio cap of 100."""
    with zipfile.ZipFile(bomb) as zf:
        infos = [i for i in zf.infolist() if "bomb" in i.filename]
        assert len(infos) == N
        assert all(i.file_size < 100 * i.compress_size for i in infos)
        if not hasattr(infos[0], "_end_offset"):  # later Pythons refuse the overlap themselves
            assert len(zf.read(infos[0].filename)) > KERNEL and zf.testzip() is None
    assert sum(i.file_size for i in infos) > 300 * bomb.stat().st_size


def test_overlapping_members_are_refused_and_the_archive_stays_within_its_ratio(
    bomb, make_data, out_dir
):
    entries = DATASETS["folder"](make_data(archive=str(bomb)), 0, out_dir)
    assert sorted(e.path for e in entries) == ["audio/birds/a.wav", "audio/frogs/b.wav"]
    written = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    assert written < 100 * bomb.stat().st_size  # the whole-archive ratio
    reasons = (out_dir / "unreadable.json").read_text()
    # every member but the last runs into the next one's header; the last (the kernel alone)
    # expands 84-fold, as an ordinary member may, and is then dropped as unreadable audio
    assert reasons.count("overlaps the next member") == N - 1


def test_the_whole_archive_ratio_stops_what_the_member_checks_miss(bomb, monkeypatch):
    """With the overlap check out of the way, the whole-archive cap alone still refuses it."""
    monkeypatch.setattr(Archive, "_overlapping", lambda self: set(), raising=False)
    with pytest.raises(DatasetError, match="data.max_compression_ratio=100 times the zip's"):
        Archive(bomb, Limits())
