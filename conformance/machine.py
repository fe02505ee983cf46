"""Facts about the machine a run computed on: the ones that select frameworks' kernels.

Frameworks pick kernels by CPU feature (oneDNN takes AMX tiles for bfloat16 where the CPU has them,
AVX-512 or AVX2 paths elsewhere), by thread count and by environment variables, so a verdict that
holds on one machine may not hold on the next. Every results document records these facts, and a
known divergence may be scoped to them (``when:`` in the baseline, see :mod:`conformance.divergences`).
"""

from __future__ import annotations

import functools
import os
import platform
from typing import Any

#: CPU features that frameworks dispatch on (x86: SIMD width, half-precision dot products, AMX
#: tiles; Arm: half-precision and dot-product extensions, SVE, SME). Only these are listed in
#: reports; ``when: cpu_flags`` conditions may name any flag the kernel reports.
KERNEL_SELECTING_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
    "asimd",
    "asimdhp",
    "asimddp",
    "bf16",
    "i8mm",
    "sve",
    "sve2",
    "sme",
)

#: environment variables that change which kernels frameworks run or how many threads they use
KERNEL_SELECTING_ENV = (
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "ONEDNN_DEFAULT_FPMATH_MODE",
    "ATEN_CPU_CAPABILITY",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_CBWR",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "TF_ENABLE_ONEDNN_OPTS",
    "XLA_FLAGS",
    "CPU",
    "CLANG",
    "TINYGRAD_DEVICE",
)


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def _microarchitecture() -> dict[str, Any]:
    try:
        import archspec.cpu
    except ImportError:
        return {}
    try:
        host = archspec.cpu.host()
    except Exception:  # archspec cannot always name a virtualised CPU
        return {}
    return {"microarchitecture": host.name, "vendor": host.vendor, "archspec_features": sorted(host.features)}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """Every feature flag the CPU reports (Linux ``flags`` / Arm ``Features``; archspec elsewhere)."""
    info = _cpuinfo()
    flags = (info.get("flags") or info.get("Features") or "").split()
    if not flags:
        flags = _microarchitecture().get("archspec_features", [])
    return frozenset(flags)


def _libc() -> str:
    name, version = platform.libc_ver()
    return f"{name} {version}".strip()


@functools.lru_cache(maxsize=1)
def machine_facts() -> dict[str, Any]:
    """The machine: CPU model and kernel-selecting features, cores, OS, libc, kernel-selecting
    environment variables. JSON-ready."""
    info = _cpuinfo()
    arch = _microarchitecture()
    flags = cpu_flags()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    return {
        "cpu": info.get("model name") or info.get("Hardware") or platform.processor() or "unknown",
        "vendor": info.get("vendor_id") or arch.get("vendor", ""),
        "microarchitecture": arch.get("microarchitecture", ""),
        "kernel_features": [f for f in KERNEL_SELECTING_FLAGS if f in flags],
        "cores": os.cpu_count() or 0,
        "usable_cores": usable,
        "machine": platform.machine(),
        "system": platform.system(),
        "release": platform.release(),
        "libc": _libc(),
        "env": {k: os.environ[k] for k in KERNEL_SELECTING_ENV if k in os.environ},
    }


def describe(facts: dict[str, Any]) -> str:
    """One line for reports: 'AMD EPYC (x86_64_v4; avx2 avx512f ... amx_bf16), 2 cores, Linux, glibc 2.36'."""
    if not facts:
        return "not recorded"
    features = " ".join(facts.get("kernel_features") or []) or "no listed features"
    arch = ", ".join(x for x in (facts.get("microarchitecture"), features) if x)
    env = facts.get("env") or {}
    env_text = "; " + " ".join(f"{k}={v}" for k, v in env.items()) if env else ""
    return (
        f"{facts.get('cpu', '?')} ({arch}), {facts.get('usable_cores', '?')} of {facts.get('cores', '?')} "
        f"cores, {facts.get('system', '?')} {facts.get('machine', '')}, {facts.get('libc') or 'no libc'}"
        f"{env_text}"
    )
