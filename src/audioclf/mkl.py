"""MKL inside torch, used directly: its vectorised code on AMD CPUs, and its FFT interface.

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

:class:`RealFFT` calls MKL's FFT interface (DFTI, also exported by ``libtorch_cpu.so``)
directly, with descriptors committed once: ``torch.fft.rfft`` commits a new one on
every call (~20-30 us for 2048 points), which ruled out transforming a segment a few
frames at a time, while the spectrum still fits in the core's cache.

MKL decides once, on its first call that needs to know, so :func:`use_vector_code`
must run before any MKL work in the process: :mod:`audioclf.frontends` calls it when
imported. Nothing is changed unless every check passes (Linux, an AMD CPU with AVX2,
the symbol and its writable, lazily bound table entry found in the very library that
is loaded); otherwise the reason is returned and MKL stays as it was. Set
``AUDIOCLF_MKL_VENDOR_CHECK=keep`` to leave MKL alone.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import struct
import threading
from pathlib import Path
from typing import Iterator

import llvmlite.binding
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

SYMBOL = "mkl_serv_intel_cpu_true"
ENV_KEEP = "AUDIOCLF_MKL_VENDOR_CHECK"
R_X86_64_JUMP_SLOT = 7
PT_LOAD, PT_GNU_RELRO, PF_W = 1, 0x6474E552, 2
_SYM = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"), ("value", "<u8"),
                 ("size", "<u8")])
_RELA = np.dtype([("offset", "<u8"), ("info", "<u8"), ("addend", "<i8")])

# DFTI's configuration names and values (mkl_dfti.h)
DFTI_NUMBER_OF_TRANSFORMS, DFTI_CONJUGATE_EVEN_STORAGE, DFTI_PLACEMENT = 7, 10, 11
DFTI_INPUT_DISTANCE, DFTI_OUTPUT_DISTANCE, DFTI_THREAD_LIMIT = 14, 15, 27
DFTI_REAL, DFTI_COMPLEX_COMPLEX, DFTI_NOT_INPLACE = 33, 39, 44
DFTI_ENTRY_POINTS = ("DftiCreateDescriptor_s_1d", "DftiSetValue", "DftiCommitDescriptor", "DftiComputeForward",
                     "DftiFreeDescriptor", "DftiErrorMessage")

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
    path = libtorch_path()
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
    if not hasattr(lib, "mkl_serv_cpu_detect"):
        return "patched: MKL's code path unknown"
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
        if e_shnum == 0 or e_shstrndx >= e_shnum or e_shentsize < 64 or e_phentsize < 56:
            return f"{path.name} has no usable section headers"
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


def libtorch_path() -> Path:
    """Where torch keeps its CPU library, MKL inside."""
    import torch

    return Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"


def _libtorch() -> ctypes.CDLL | None:
    """``libtorch_cpu.so`` as loaded by torch, if it exports MKL's FFT interface."""
    path = libtorch_path()
    try:
        lib = ctypes.CDLL(str(path))
        for name in DFTI_ENTRY_POINTS:
            getattr(lib, name)
    except (OSError, AttributeError):
        return None
    lib.DftiErrorMessage.restype = ctypes.c_char_p
    # the compiled kernels call DftiComputeForward by name: tell numba's linker where it is
    llvmlite.binding.add_symbol("DftiComputeForward", ctypes.cast(lib.DftiComputeForward, ctypes.c_void_p).value)
    return lib


_LIB = _libtorch()
DFTI = _LIB is not None   # MKL's FFT can be called directly


@intrinsic
def dfti_forward(typingctx, handle, src, dst):
    """``DftiComputeForward(handle, src, dst)`` from compiled code; all three are addresses (int64).

    DftiComputeForward takes variable arguments, so it is declared as such: the caller
    then says how many vector registers it passes (none), as the C convention asks.
    """
    def codegen(context, builder, signature, args):
        pointer = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.IntType(64), [pointer], var_arg=True)
        fn = cgutils.get_or_insert_function(builder.module, fnty, "DftiComputeForward")
        return builder.call(fn, [builder.inttoptr(a, pointer) for a in args])

    return types.int64(types.int64, types.int64, types.int64), codegen


class RealFFT:
    """Committed MKL descriptors for the real FFTs of ``count`` overlapping frames, any count up to ``most``.

    Frame ``t`` is ``n_fft`` samples from ``t * hop`` of a float32 array; its
    ``n_fft // 2 + 1`` complex64 bins go to row ``t`` of the output. One thread at a
    time uses an instance (see :func:`real_fft`): single-threaded transforms, no locking.
    """

    def __init__(self, n_fft: int, hop: int, most: int):
        if _LIB is None:
            raise RuntimeError("MKL's FFT interface is not available in this torch build")
        self.n_fft, self.hop, self.most = n_fft, hop, most
        self.handles = np.zeros(most + 1, dtype=np.int64)   # by frame count; 0: not created yet
        self._scratch: tuple[np.ndarray, np.ndarray] | None = None

    def handle(self, count: int) -> int:
        """The committed descriptor for ``count`` frames (created on first use)."""
        if not 0 < count <= self.most:
            raise ValueError(f"count must be in 1..{self.most}, got {count}")
        if not self.handles[count]:
            h = ctypes.c_void_p()
            _check(_LIB.DftiCreateDescriptor_s_1d(ctypes.byref(h), DFTI_REAL, ctypes.c_long(self.n_fft)), "create")
            for name, value in ((DFTI_NUMBER_OF_TRANSFORMS, count), (DFTI_CONJUGATE_EVEN_STORAGE, DFTI_COMPLEX_COMPLEX),
                                (DFTI_PLACEMENT, DFTI_NOT_INPLACE), (DFTI_INPUT_DISTANCE, self.hop),
                                (DFTI_OUTPUT_DISTANCE, self.n_fft // 2 + 1), (DFTI_THREAD_LIMIT, 1)):
                _check(_LIB.DftiSetValue(h, name, ctypes.c_long(value)), f"set {name}")
            _check(_LIB.DftiCommitDescriptor(h), "commit")
            self.handles[count] = h.value
        return int(self.handles[count])

    def scratch(self, samples: int, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
        """Zeroed float32 input (samples,) and output (most, n_bins, 2) arrays, kept for the next call of this size.

        A caller writes only the same middle part of the input each time, so its ends stay zero.
        """
        if self._scratch is None or self._scratch[0].shape[0] != samples or self._scratch[1].shape[1] != n_bins:
            self._scratch = np.zeros(samples, dtype=np.float32), np.zeros((self.most, n_bins, 2), dtype=np.float32)
        return self._scratch

    def __del__(self):
        lib = _LIB      # None once the interpreter is shutting down
        if lib is not None:
            for h in self.handles[self.handles != 0]:
                lib.DftiFreeDescriptor(ctypes.byref(ctypes.c_void_p(int(h))))


_pools: dict[tuple[int, int, int], list[RealFFT]] = {}
_pools_lock = threading.Lock()


@contextlib.contextmanager
def real_fft(n_fft: int, hop: int, most: int) -> Iterator[RealFFT]:
    """A :class:`RealFFT` no other thread is using, kept for reuse (descriptors are committed once per thread)."""
    key = (n_fft, hop, most)
    with _pools_lock:
        pool = _pools.setdefault(key, [])
        fft = pool.pop() if pool else None
    fft = fft or RealFFT(n_fft, hop, most)
    try:
        yield fft
    finally:
        with _pools_lock:
            pool.append(fft)


def error_message(status: int) -> str:
    return _LIB.DftiErrorMessage(ctypes.c_long(status)).decode(errors="replace") if _LIB else f"status {status}"


def _check(status: int, what: str) -> None:
    if status:
        raise RuntimeError(f"MKL DFTI {what} failed: {error_message(status)}")
