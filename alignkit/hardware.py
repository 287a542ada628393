"""What this machine's CPU offers: its model, core count and the ISA flags that decide how fast a matmul
runs (AVX-512, AMX, ...), read from ``/proc/cpuinfo``; whether bfloat16 products are fast here; and
giving freed memory back between the stages of a long process (:func:`release_memory`)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
             "amx_int8", "neon", "asimd", "sve", "sve2", "bf16")


# ----------------------------------------------------------------------------- CPU


@dataclass(frozen=True)
class CpuInfo:
    """The CPU model, its logical CPU count and the ISA flags (of :data:`ISA_FLAGS`) it reports."""

    model: str
    cpus: int
    flags: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.model}, {self.cpus} CPUs; ISA: {' '.join(self.flags) or 'none of ' + ', '.join(ISA_FLAGS[:8])}"


def parse_cpuinfo(text: str) -> CpuInfo:
    """Read ``/proc/cpuinfo`` text: ``model name`` (x86) or ``Hardware`` / ``CPU part`` (ARM), the
    number of ``processor`` entries, and which of :data:`ISA_FLAGS` its ``flags`` (``Features`` on ARM)
    line lists."""
    model, cpus, flags = "", 0, set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "processor":
            cpus += 1
        elif key in ("model name", "hardware", "cpu part") and not model:
            model = value
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return CpuInfo(model=model or platform.processor() or "unknown CPU", cpus=max(cpus, 1),
                   flags=tuple(f for f in ISA_FLAGS if f in flags))


def read_cpu_info(path: str | Path = "/proc/cpuinfo") -> CpuInfo:
    """:func:`parse_cpuinfo` of this machine (``platform`` names only, where there is no such file)."""
    try:
        text = Path(path).read_text()
    except OSError:
        text = ""
    return parse_cpuinfo(text)


def has_amx() -> bool:
    """Whether this CPU has AMX bfloat16 tiles (``amx_bf16``): the CPU flash-attention kernel's bfloat16 path
    is fast there; without them it runs a decode step's one-row queries 8-12x slower than two batched
    products (measured on an AMD EPYC with AVX-512 BF16, see :meth:`LeanDecoder._attend`)."""
    return "amx_bf16" in read_cpu_info().flags


def fast_bf16() -> bool:
    """Whether bfloat16 matrix products run natively here (faster than float32): a CUDA GPU with bf16, or a
    CPU with AMX (``amx_bf16``) or AVX-512 BF16. Without them (e.g. AVX2-only CPUs) bfloat16 is emulated
    and slower than float32."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    flags = set(read_cpu_info().flags)
    return bool(flags & {"amx_bf16", "avx512_bf16"})


# ----------------------------------------------------------------------------- memory


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim`` (None where the C library is not glibc: musl, macOS, Windows)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # pragma: no cover - a Linux without glibc's symbol
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_memory() -> bool:
    """Collect garbage, empty CUDA's cache and, on glibc, ``malloc_trim(0)``: the heap's free chunks are
    merged and their pages given back. Call it between the stages of a long process (after a model is
    dropped), not inside a loop (it takes 0.1-0.3 s). Returns whether ``malloc_trim`` ran (False off glibc).

    Why: torch takes CPU tensors from glibc's ``posix_memalign``. After a training stage the heap holds
    gigabytes of freed chunks of every size, and each new tensor's allocation searched them: in
    ``alignkit demo`` (AMD EPYC, 2026-12-08) ``posix_memalign`` took ~20 % of the final evaluation's main
    thread (py-spy, against ~1 % in the first evaluation) and the evaluation ran 96-101 s, against 56-65 s
    for the same model, answers identical, in a fresh process. With a trim at each stage boundary: 70-74 s
    (the whole demo 707-750 s against 811-836; README, "Giving the heap back between stages")."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    trim = _malloc_trim()
    return bool(trim is not None and trim(0) >= 0)
