"""The machine facts: CPU features read by CPUID agree with what Linux lists, and the flags Linux does
not list come from CPUID only where the OS saves AVX state."""

from __future__ import annotations

import platform

import pytest

from conformance import machine

x86_linux = pytest.mark.skipif(
    platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"),
    reason="CPUID is read on x86-64 Linux only",
)

#: features Linux lists in /proc/cpuinfo, by where CPUID has them (leaf, subleaf, register, bit)
LISTED_BY_LINUX = {
    "sse4_2": (1, 0, "ecx", 20),
    "avx": (1, 0, "ecx", 28),
    "f16c": (1, 0, "ecx", 29),
    "avx2": (7, 0, "ebx", 5),
    "avx512f": (7, 0, "ebx", 16),
    "avx512bw": (7, 0, "ebx", 30),
    "avx512_fp16": (7, 0, "edx", 23),
    "amx_bf16": (7, 0, "edx", 22),
    "avx512_bf16": (7, 1, "eax", 5),
}


@x86_linux
def test_cpuid_reads_the_features_linux_lists() -> None:
    """The CPUID routine's registers, in its order, against /proc/cpuinfo on the same machine: a
    routine that stored a register in another's place, or read another leaf, disagrees somewhere."""
    listed = frozenset((machine._cpuinfo().get("flags") or "").split())
    if not listed:
        pytest.skip("no flags in /proc/cpuinfo")
    vendor = machine.cpuid(0)
    assert vendor is not None, "CPUID could not be read on x86-64 Linux"
    name = b"".join(vendor[r].to_bytes(4, "little") for r in ("ebx", "edx", "ecx")).decode()
    assert name == machine._cpuinfo().get("vendor_id"), name
    for flag, (leaf, subleaf, register, bit) in LISTED_BY_LINUX.items():
        registers = machine.cpuid(leaf, subleaf)
        has = registers is not None and bool(registers[register] >> bit & 1)
        if flag.startswith("avx512") and "avx512f" not in listed:
            continue  # an OS that does not save AVX-512 state hides what CPUID reports
        assert has == (flag in listed), f"{flag}: CPUID {has}, /proc/cpuinfo {flag in listed}"


@x86_linux
def test_flags_linux_does_not_list_come_from_cpuid() -> None:
    listed = frozenset((machine._cpuinfo().get("flags") or "").split())
    registers = machine.cpuid(7, 1)
    expected = set()
    if registers is not None and "avx" in listed:
        expected = {n for n, (_, _, r, bit) in machine.CPUID_ONLY_FLAGS.items() if registers[r] >> bit & 1}
    assert machine.cpuid_only_flags(listed) == expected
    assert expected <= machine.cpu_flags()
    assert machine.cpuid_only_flags(listed - {"avx"}) == frozenset()  # no AVX state saved: none usable


def test_cpuid_is_none_where_it_cannot_be_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine.platform, "machine", lambda: "aarch64")
    machine._cpuid_function.cache_clear()
    machine.cpuid.cache_clear()
    try:
        assert machine.cpuid(7, 1) is None
        assert machine.cpuid_only_flags(frozenset({"avx"})) == frozenset()
    finally:
        machine._cpuid_function.cache_clear()
        machine.cpuid.cache_clear()
