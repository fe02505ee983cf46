"""Facts about the machine a run computed on: the ones that select frameworks' kernels.

Frameworks pick kernels by CPU feature (oneDNN takes AMX tiles for bfloat16 where the CPU has them,
AVX-512 or AVX2 paths elsewhere), by thread count and by environment variables, so a verdict that
holds on one machine may not hold on the next. Every results document records these facts, and a
known divergence may be scoped to them (``when:`` in the baseline, see :mod:`conformance.divergences`).
"""

from __future__ import annotations

import ctypes
import functools
import mmap
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
    "avx_ne_convert",
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
    """Every feature flag the CPU reports (Linux ``flags`` / Arm ``Features``; archspec elsewhere),
    with those that frameworks test by CPUID and Linux does not list (:data:`CPUID_ONLY_FLAGS`)."""
    info = _cpuinfo()
    flags = (info.get("flags") or info.get("Features") or "").split()
    if not flags:
        flags = _microarchitecture().get("archspec_features", [])
    return frozenset(flags) | cpuid_only_flags(frozenset(flags))


#: x86 features that frameworks test with the CPUID instruction and that Linux's /proc/cpuinfo does
#: not list (the kernel keeps CPUID leaf 7 subleaf 1's EDX for KVM only), by (leaf, subleaf,
#: register, bit). TensorFlow sends bfloat16 and float16 to oneDNN on a CPU with AVX-NE-CONVERT
#: even without AVX-512 (``IsDataTypeSupportedByOneDNNOnThisCPU``): Sierra Forest, Arrow Lake.
CPUID_ONLY_FLAGS = {
    "avx_vnni_int8": (7, 1, "edx", 4),
    "avx_ne_convert": (7, 1, "edx", 5),
}


def cpuid_only_flags(listed: frozenset[str]) -> frozenset[str]:
    """Which of :data:`CPUID_ONLY_FLAGS` this CPU has. Each is an AVX instruction, usable only where
    the OS saves AVX state, which Linux tells by listing ``avx``: without it, none."""
    if "avx" not in listed:
        return frozenset()
    found = set()
    for name, (leaf, subleaf, register, bit) in CPUID_ONLY_FLAGS.items():
        registers = cpuid(leaf, subleaf)
        if registers is not None and registers[register] >> bit & 1:
            found.add(name)
    return frozenset(found)


# cpuid(leaf in edi, subleaf in esi, out in rdx) for the x86-64 System V ABI: the four registers
# stored to out[0..3]. Python has no CPUID of its own, and a compiler may not be at hand.
_CPUID_CODE = bytes(
    [
        0xF3, 0x0F, 0x1E, 0xFA,  # endbr64 (a valid target of an indirect call under CET; else a NOP)
        0x53,  # push rbx (callee-saved; cpuid writes it)
        0x49, 0x89, 0xD0,  # mov r8, rdx (cpuid writes rdx)
        0x89, 0xF8,  # mov eax, edi
        0x89, 0xF1,  # mov ecx, esi
        0x0F, 0xA2,  # cpuid
        0x41, 0x89, 0x00,  # mov [r8], eax
        0x41, 0x89, 0x58, 0x04,  # mov [r8 + 4], ebx
        0x41, 0x89, 0x48, 0x08,  # mov [r8 + 8], ecx
        0x41, 0x89, 0x50, 0x0C,  # mov [r8 + 12], edx
        0x5B,  # pop rbx
        0xC3,  # ret
    ]
)  # fmt: skip
_REGISTERS = ("eax", "ebx", "ecx", "edx")


@functools.lru_cache(maxsize=1)
def _cpuid_function() -> Any:
    """The CPUID routine in an executable page, or None: not x86-64 Linux, or a system that allows
    no executable memory to be mapped (the page lives as long as the process)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, ValueError):
        return None
    page.write(_CPUID_CODE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    prototype = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32))
    function = prototype(address)
    function.page = page  # (kept mapped with the function)
    return function


@functools.lru_cache(maxsize=64)
def cpuid(leaf: int, subleaf: int = 0) -> dict[str, int] | None:
    """CPUID's four registers for ``leaf``/``subleaf`` ({'eax': ..., 'ebx': ..., ...}), or None
    where it cannot be read or the CPU has no such leaf."""
    function = _cpuid_function()
    if function is None:
        return None
    out = (ctypes.c_uint32 * 4)()
    if leaf != 0:
        function(leaf & 0x80000000, 0, out)  # the highest leaf of this range
        if out[0] < leaf:
            return None
        if leaf == 7 and subleaf:
            function(7, 0, out)  # leaf 7's highest subleaf
            if out[0] < subleaf:
                return None
    function(leaf, subleaf, out)
    return dict(zip(_REGISTERS, out))


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
