"""MKL's vendor check in libtorch_cpu.so: found, bypassed only on AMD CPUs, and the FFT unchanged but for rounding."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audioclf import mkl

LIBTORCH = mkl.libtorch_path()
ON_LINUX_X86 = platform.system() == "Linux" and platform.machine() == "x86_64"
vendor, flags = mkl._cpu()
AMD_AVX2 = ON_LINUX_X86 and vendor == "AuthenticAMD" and "avx2" in flags

# a fresh interpreter: its status, the MKL code path, and the rFFT of seeded frames against float64 numpy
PROBE = """
import json, sys
import numpy as np
{before}
from audioclf.frontends import MKL_STATUS
import torch
x = np.random.default_rng(0).standard_normal((64, 2048)).astype(np.float32)
got = torch.fft.rfft(torch.from_numpy(x)).numpy()
ref = np.fft.rfft(x.astype(np.float64))
np.save(sys.argv[1], got)
print(json.dumps({{"status": MKL_STATUS, "rel_err": float(np.abs(got - ref).max() / np.abs(ref).max())}}))
"""


def probe(tmp_path: Path, name: str, env: dict | None = None, before: str = "") -> tuple[dict, np.ndarray]:
    out = tmp_path / f"{name}.npy"
    run = subprocess.run([sys.executable, "-c", PROBE.format(before=before), str(out)], capture_output=True,
                         text=True, env={**os.environ, **(env or {})}, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1]), np.load(out)


@pytest.mark.skipif(not (ON_LINUX_X86 and LIBTORCH.is_file()), reason="torch's MKL build is Linux x86_64")
def test_the_vendor_check_is_a_writable_lazy_entry_of_libtorch():
    found = mkl.plt_slot(LIBTORCH, mkl.SYMBOL)
    assert isinstance(found, tuple), found
    slot, value = found
    assert slot > 0 and value > 0 and slot != value


def test_files_without_the_entry_are_left_alone(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a library")
    assert mkl.plt_slot(text, mkl.SYMBOL) == "notes.txt is not a little-endian ELF64 file"
    bare = tmp_path / "bare.so"
    bare.write_bytes(b"\x7fELF\x02\x01" + bytes(58))            # an ELF64 header and nothing else
    assert mkl.plt_slot(bare, mkl.SYMBOL) == "bare.so has no usable section headers"
    if ON_LINUX_X86:   # an ELF library that has no such symbol: this interpreter's own binary
        reason = mkl.plt_slot(Path(sys.executable).resolve(), mkl.SYMBOL)
        assert isinstance(reason, str) and ("defines no" in reason or "no dynamic symbols" in reason), reason


@pytest.mark.skipif(not AMD_AVX2, reason="MKL is only redirected on AMD CPUs with AVX2")
def test_on_amd_mkl_runs_its_vector_code_with_the_same_fft(tmp_path):
    patched, fft_patched = probe(tmp_path, "patched")
    kept, fft_kept = probe(tmp_path, "kept", env={mkl.ENV_KEEP: "keep"})
    assert patched["status"].startswith("patched: MKL code path "), patched
    assert int(patched["status"].rsplit(" ", 1)[1]) > 0
    assert kept["status"] == f"left alone: {mkl.ENV_KEEP}=keep"
    # both are the float32 transform: within float32 rounding of float64's, and of each other
    assert patched["rel_err"] < 1e-5 and kept["rel_err"] < 1e-5, (patched, kept)
    assert not np.array_equal(fft_patched, fft_kept)          # another code path: other rounding
    np.testing.assert_allclose(fft_patched, fft_kept, rtol=0, atol=1e-5 * np.abs(fft_kept).max())


@pytest.mark.skipif(not AMD_AVX2, reason="MKL is only redirected on AMD CPUs with AVX2")
def test_too_late_once_mkl_has_chosen(tmp_path):
    late, _ = probe(tmp_path, "late", before="import torch; torch.fft.rfft(torch.ones(4, 64))")
    assert late["status"] == "patched too late: MKL had already chosen its generic code (path 0)"
    assert late["rel_err"] < 1e-5


@pytest.mark.skipif(AMD_AVX2, reason="checks the other CPUs")
def test_other_cpus_are_left_alone():
    status = mkl._patch()
    assert status.startswith("left alone: "), status
