"""pytest plugin: case files become test items, one per case x framework x check.

``pytest cases/`` collects every case file (a YAML file with a top-level ``cases:`` list) into
items such as ``conv_transpose2d.yaml::unet-up[torch-forward]``, so ``-k``, ``-x``, ``--lf`` and
``-n`` (pytest-xdist) work as usual. Known divergences become xfail; a known divergence that
passes fails strictly, like the CLI gate. Tests run in the pytest process: for crash isolation
of a framework that may kill its process use ``conformance run`` (or ``pytest -n``, whose
workers are restarted by xdist).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conformance import divergences as known_divergences
from conformance.adapters import (
    Adapter,
    AdapterLoadError,
    importable_builtins,
    load_adapter,
    split_variant,
)
from conformance.cases import Case, CaseFileError, load_case_file
from conformance.checks import Reference, checks_for, run_checks
from conformance.results import Result

KNOWN_DIVERGENCES_GLOB = "known_divergences*.yaml"
_ADAPTERS = pytest.StashKey[list[Adapter]]()
_KNOWN = pytest.StashKey[dict[Path, list[known_divergences.Divergence]]]()
_FACTS = pytest.StashKey[dict[str, dict[str, known_divergences.RunFacts]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "transposed-convolution conformance cases")
    group.addoption(
        "--conformance-framework",
        action="append",
        default=[],
        metavar="NAME",
        help="framework to test (repeatable; default: every installed built-in)",
    )
    group.addoption(
        "--conformance-adapter",
        action="append",
        default=[],
        metavar="SPEC",
        help="adapter package.module:Class or file.py:Class (repeatable)",
    )
    group.addoption(
        "--conformance-check",
        default=None,
        metavar="LIST",
        help="comma-separated checks (default: all applicable)",
    )
    group.addoption(
        "--conformance-known-divergences",
        default=None,
        metavar="FILE",
        help="known-divergences file (default: known_divergences.yaml beside the case file)",
    )


def pytest_configure(config: pytest.Config) -> None:
    specs = [*config.getoption("conformance_framework"), *config.getoption("conformance_adapter")]
    variants = [s for s in specs if split_variant(s)[1] is not None]
    if variants:
        # A variant sets process-wide state (environment before import, backend switches) that
        # would change the other adapters' kernels in this one process.
        raise pytest.UsageError(
            f"kernel-path variants ({', '.join(variants)}) need a process of their own: "
            "run them with `conformance run --framework NAME[VARIANT]`"
        )


def _adapters(config: pytest.Config) -> list[Adapter]:
    if _ADAPTERS not in config.stash:
        specs = [*config.getoption("conformance_framework"), *config.getoption("conformance_adapter")]
        specs = specs or list(importable_builtins())
        try:
            config.stash[_ADAPTERS] = [load_adapter(s) for s in specs]
        except AdapterLoadError as exc:
            raise pytest.UsageError(str(exc)) from None
    return config.stash[_ADAPTERS]


def _known(config: pytest.Config, case_file: Path) -> list[known_divergences.Divergence]:
    explicit = config.getoption("conformance_known_divergences")
    paths = [Path(explicit)] if explicit else sorted(case_file.parent.glob(KNOWN_DIVERGENCES_GLOB))
    cache = config.stash.setdefault(_KNOWN, {})
    entries = []
    for path in paths:
        if path not in cache:
            try:
                cache[path] = known_divergences.load_divergences(path) if path.is_file() else []
            except CaseFileError as exc:
                raise pytest.UsageError(str(exc)) from None
        entries.extend(cache[path])
    return entries


def _run_facts(config: pytest.Config, adapter: Adapter) -> dict[str, known_divergences.RunFacts]:
    """The facts baseline ``when:`` conditions read, gathered once per adapter (build facts may
    spawn a compiler, as tinygrad's do)."""
    cache = config.stash.setdefault(_FACTS, {})
    if adapter.name not in cache:
        cache[adapter.name] = known_divergences.run_facts(
            {adapter.name: adapter.version()}, {adapter.name: adapter.build_facts()}
        )
    return cache[adapter.name]


def _is_case_file(path: Path) -> bool:
    if path.suffix not in (".yaml", ".yml") or path.name.startswith("known_divergences"):
        return False
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:65536]
    except OSError:
        return False
    return any(line.startswith("cases:") for line in head.splitlines())


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if _is_case_file(file_path):
        return CaseFile.from_parent(parent, path=file_path)
    return None


class CaseFile(pytest.File):
    def collect(self):
        try:
            cases = load_case_file(self.path)
        except CaseFileError as exc:
            raise self.CollectError(str(exc)) from None
        adapters = _adapters(self.config)
        selected = self.config.getoption("conformance_check")
        selected = selected.split(",") if selected else None
        computed: dict[tuple[str, str], dict[str, Result]] = {}
        for case in cases:
            for adapter in adapters:
                for check in checks_for(case, selected):
                    yield CaseItem.from_parent(
                        self,
                        name=f"{case.id}[{adapter.name}-{check}]",
                        case=case,
                        adapter=adapter,
                        check=check,
                        selected=selected,
                        computed=computed,
                    )


class CaseFailure(Exception):
    def __init__(self, result: Result) -> None:
        super().__init__(result.message)
        self.result = result


class CaseItem(pytest.Item):
    def __init__(
        self,
        *,
        case: Case,
        adapter: Adapter,
        check: str,
        selected: list[str] | None,
        computed: dict[tuple[str, str], dict[str, Result]],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.case, self.adapter, self.check = case, adapter, check
        self.selected, self.computed = selected, computed
        for tag in case.tags:
            self.add_marker(tag.replace(":", "_").replace("-", "_"))
        self.user_properties.append(("framework", adapter.name))

    def runtest(self) -> None:
        # One adapter call serves every check of a (case, framework): the gradients share one vjp().
        key = (self.case.id, self.adapter.name)
        if key not in self.computed:
            results = run_checks(self.case, self.adapter, Reference(self.case), self.selected)
            self.computed[key] = {r.check: r for r in results}
        result = self.computed[key].pop(self.check)
        known_divergences.apply(
            [result], _known(self.config, Path(self.case.file)), facts=_run_facts(self.config, self.adapter)
        )
        if result.status == "unsupported":
            pytest.skip(f"unsupported: {result.message}")
        if result.status == "xfail":
            pytest.xfail(f"known divergence: {result.divergence['reason']}")
        if result.status != "pass":
            raise CaseFailure(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:
        if isinstance(excinfo.value, CaseFailure):
            r = excinfo.value.result
            p = r.params
            lines = [
                f"{r.framework} {r.check} {r.status}: {r.message}",
                f"  {p['op']} input_shape={p['input_shape']} out_channels={p['out_channels']} "
                f"k={p['kernel_size']} s={p['stride']} p={p['padding']} op={p['output_padding']} "
                f"d={p['dilation']} g={p['groups']} bias={p['bias']} dtype={p['dtype']}",
                f"  file {self.case.file}, line {self.case.line}",
            ]
            return "\n".join(lines)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, (self.case.line or 1) - 1, f"{self.case.nodeid}[{self.adapter.name}-{self.check}]"
