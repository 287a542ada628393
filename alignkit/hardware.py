"""What this machine's CPU offers: its model, core count and the ISA flags that decide how fast a matmul
runs (AVX-512, AMX, ...), read from ``/proc/cpuinfo``; and whether bfloat16 products are fast here."""

from __future__ import annotations

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
