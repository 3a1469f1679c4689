"""MKL's vectorised code paths on AMD CPUs, for the CPU front-end's FFT.

torch's x86-64 wheels carry Intel MKL inside ``libtorch_cpu.so``, and MKL chooses its
code path by the CPU's vendor as well as its features: on an AMD CPU it runs its
generic code even where the CPU has AVX2 or AVX-512. The rFFT of a 4-s segment (173
frames of 2048) took 0.29 ms that way on a Zen 4 EPYC, and 0.16 ms with MKL's own
AVX2/AVX-512 code. MKL asks ``mkl_serv_intel_cpu_true`` which vendor it runs on, and
``libtorch_cpu.so`` calls that through its procedure linkage table; pointing that
table entry at a function that returns 1 lets MKL choose by the CPU's features
alone, as preloading such a function (``LD_PRELOAD``) would, but from inside the
process. The results are those MKL gives on an Intel CPU of the same features: the
same transform, rounded differently.

MKL decides once, on its first call that needs to know, so :func:`use_vector_code`
must run before any MKL work in the process: :mod:`audioclf.frontends` calls it when
imported. Nothing is changed unless every check passes (Linux, an AMD CPU with AVX2,
the symbol and its writable, lazily bound table entry found in the very library that
is loaded); otherwise the reason is returned and MKL stays as it was. Set
``AUDIOCLF_MKL_VENDOR_CHECK=keep`` to leave MKL alone.
"""
from __future__ import annotations

import ctypes
import os
import platform
import struct
from pathlib import Path

import numba
import numpy as np

SYMBOL = "mkl_serv_intel_cpu_true"
ENV_KEEP = "AUDIOCLF_MKL_VENDOR_CHECK"
R_X86_64_JUMP_SLOT = 7
PT_LOAD, PT_GNU_RELRO, PF_W = 1, 0x6474E552, 2
_SYM = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"), ("value", "<u8"),
                 ("size", "<u8")])
_RELA = np.dtype([("offset", "<u8"), ("info", "<u8"), ("addend", "<i8")])

_status: str | None = None


@numba.cfunc("int32()", cache=True)
def _intel_cpu_true() -> int:
    """What MKL's vendor check returns from now on: yes."""
    return 1


def use_vector_code() -> str:
    """Let MKL inside ``libtorch_cpu.so`` pick its code path by CPU features on AMD CPUs (once per process).

    Returns:
        What happened: ``"patched: ..."`` with the code path MKL then reports, or why nothing was changed.
    """
    global _status
    if _status is None:
        _status = _patch()
    return _status


def _patch() -> str:
    if os.environ.get(ENV_KEEP, "") == "keep":
        return f"left alone: {ENV_KEEP}=keep"
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return f"left alone: {platform.system()} {platform.machine()}, not Linux x86_64"
    vendor, flags = _cpu()
    if vendor != "AuthenticAMD" or "avx2" not in flags:
        return f"left alone: {vendor or 'unknown'} CPU{'' if 'avx2' in flags else ' without AVX2'}"
    import torch

    path = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    if not path.is_file():
        return f"left alone: no {path}"
    found = plt_slot(path, SYMBOL)
    if isinstance(found, str):
        return f"left alone: {found}"
    slot_offset, symbol_value = found
    lib = ctypes.CDLL(str(path))
    real = ctypes.cast(getattr(lib, SYMBOL), ctypes.c_void_p).value
    base = real - symbol_value
    slot = base + slot_offset
    mapping = _mapping(slot)
    if base % os.sysconf("SC_PAGE_SIZE") or mapping is None or Path(mapping[1]).resolve() != path.resolve() \
            or "w" not in mapping[0]:
        return f"left alone: the table entry of {SYMBOL} is not a writable part of {path.name} as loaded"
    entry = ctypes.c_void_p.from_address(slot)
    bound = _mapping(entry.value or 0)
    if entry.value != real and (bound is None or Path(bound[1]).resolve() != path.resolve()):
        return f"left alone: {SYMBOL} is bound outside {path.name} (preloaded?)"   # neither MKL's nor its lazy stub
    entry.value = _intel_cpu_true.address
    code = lib.mkl_serv_cpu_detect()
    if code == 0:
        return "patched too late: MKL had already chosen its generic code (path 0)"
    return f"patched: MKL code path {code}"


def plt_slot(path: Path, symbol: str) -> tuple[int, int] | str:
    """Where ``path`` keeps its lazily bound procedure-table entry for ``symbol``.

    Returns:
        (entry offset, the symbol's own offset), both relative to the library's load
        address, or the reason none was found (not ELF64, no such symbol, no lazy
        entry, or one inside the part made read-only after loading).
    """
    with open(path, "rb") as fh:
        head = fh.read(64)
        if head[:6] != b"\x7fELF\x02\x01":
            return f"{path.name} is not a little-endian ELF64 file"
        e_phoff, e_shoff = struct.unpack_from("<QQ", head, 0x20)
        e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHHHH", head, 0x36)
        sections = [struct.unpack_from("<IIQQQQIIQQ", _read(fh, e_shoff + i * e_shentsize, e_shentsize))
                    for i in range(e_shnum)]
        names = _read(fh, sections[e_shstrndx][4], sections[e_shstrndx][5])
        by_name = {names[s[0]:names.index(b"\0", s[0])].decode(): s for s in sections}
        if not {".dynsym", ".dynstr", ".rela.plt"} <= by_name.keys():
            return f"{path.name} has no dynamic symbols or lazy bindings"
        strings = _read(fh, by_name[".dynstr"][4], by_name[".dynstr"][5])
        at = strings.find(b"\0" + symbol.encode() + b"\0")
        symbols = np.frombuffer(_read(fh, by_name[".dynsym"][4], by_name[".dynsym"][5]), _SYM)
        index = np.flatnonzero((symbols["name"] == at + 1) & (symbols["value"] != 0)) if at >= 0 else []
        if len(index) == 0:
            return f"{path.name} defines no {symbol}"
        relocs = np.frombuffer(_read(fh, by_name[".rela.plt"][4], by_name[".rela.plt"][5]), _RELA)
        hits = relocs["offset"][relocs["info"] == (int(index[0]) << 32 | R_X86_64_JUMP_SLOT)]
        if len(hits) == 0:
            return f"{path.name} calls {symbol} directly, not through its procedure table"
        segments = [struct.unpack_from("<IIQQQQQQ", _read(fh, e_phoff + i * e_phentsize, e_phentsize))
                    for i in range(e_phnum)]
    offset = int(hits[0])
    if any(p[0] == PT_GNU_RELRO and p[3] <= offset < p[3] + p[6] for p in segments):
        return f"the entry of {symbol} in {path.name} is made read-only after loading"
    if not any(p[0] == PT_LOAD and p[1] & PF_W and p[3] <= offset < p[3] + p[6] for p in segments):
        return f"the entry of {symbol} in {path.name} is not in a writable segment"
    return offset, int(symbols["value"][index[0]])


def _read(fh, offset: int, size: int) -> bytes:
    fh.seek(offset)
    return fh.read(size)


def _cpu() -> tuple[str, set[str]]:
    """The CPU's vendor and feature flags, from ``/proc/cpuinfo`` ("" and none if unreadable)."""
    vendor, flags = "", set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "vendor_id":
                    vendor = value.strip()
                elif key.strip() == "flags":
                    return vendor, set(value.split())
    except OSError:
        pass
    return vendor, flags


def _mapping(address: int) -> tuple[str, str] | None:
    """(permissions, file) of this process's file mapping that holds ``address``, or None."""
    with open("/proc/self/maps") as fh:
        for line in fh:
            fields = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if lo <= address < hi:
                return (fields[1], fields[5].strip()) if len(fields) == 6 and fields[5].startswith("/") else None
    return None
