"""The adapter contract and adapter loading.

An adapter puts one layer implementation under the gate. It receives NumPy arrays in the canonical
(PyTorch) layouts and returns one; converting to and from its framework's layouts is its own job
(helpers in :mod:`conformance.layouts`). It calls the framework's public API exactly as the
framework's users do: a workaround for a framework bug inside an adapter would hide the very
divergence this harness exists to show.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from conformance.builtin_adapters import BUILTIN_PACKAGES, BUILTINS, split_variant
from conformance.spec import ConvParams

if TYPE_CHECKING:
    from conformance.cases import Case
    from conformance.layer_api import LayerIntrospection

ENTRY_POINT_GROUP = "conformance.adapters"


class AdapterLoadError(Exception):
    """An adapter spec that cannot be resolved or imported (bad usage, exit code 2)."""


@dataclass(frozen=True)
class Variant:
    """A named way of running a framework that selects other kernel paths (oneDNN off, an ISA cap,
    later a device). ``env`` is set in the worker process before the framework is imported; what
    can be switched at run time goes in :meth:`Adapter.configure_variant`."""

    description: str
    env: Mapping[str, str] = field(default_factory=dict)


class Adapter:
    """Base class for an implementation under test.

    Subclasses set ``name`` and implement :meth:`forward`. Capability limits are declared, not
    discovered by failing: list them in ``unsupported_dtypes`` / ``unsupported_ndims`` (value: the
    reason) or override :meth:`unsupported`; such cases are reported as ``unsupported``.

    What the API can express beyond PyTorch's functional parameters is declared the same way (the
    ``takes_*`` attributes; :meth:`inexpressible` turns them into reasons): a case the framework's
    users cannot write is ``unsupported`` with the reason, never a divergence. By default an adapter
    takes symmetric padding only, no string padding, no ``output_size``, batched inputs only.
    """

    name: str = ""
    #: distribution whose version is reported (``importlib.metadata``); None: ``version()`` decides
    distribution: str | None = None
    unsupported_dtypes: ClassVar[dict[str, str]] = {}
    unsupported_ndims: ClassVar[dict[int, str]] = {}
    #: whether the API can be told C_out independently of the weight (it can't in torch.functional,
    #: where C_out = weight.shape[1] * groups, so "C_out divisible by groups" is not expressible).
    expresses_out_channels: bool = False
    #: named kernel-path variants (name -> Variant, or its description); ``--framework NAME[VARIANT]``
    variants: ClassVar[Mapping[str, Variant | str]] = {}
    #: the variant this instance runs (None: the framework's default path)
    variant: str | None = None
    #: top-level modules of the framework under test: an exception raised outside them (in the
    #: adapter's own code) is an adapter error, never error parity. Empty: the modules of
    #: ``distribution``; failing that, everything outside the adapter's own module.
    framework_modules: ClassVar[tuple[str, ...]] = ()
    #: the API takes per-axis (lo, hi) padding pairs (``params.padding_pairs``)
    takes_padding_pairs: bool = False
    #: the API takes PyTorch's (padding, output_padding) only, and the adapter passes
    #: ``params.symmetric_padding``: asymmetric pairs run where that form exists
    folds_asymmetric_padding: bool = False
    #: string paddings (:data:`conformance.spec.PADDING_MODES`) the API takes as written
    padding_modes: ClassVar[frozenset[str]] = frozenset()
    #: the API takes output_size (``params.output_size``) itself
    takes_output_size: bool = False
    #: the API takes unbatched ``(C_in, *spatial)`` inputs
    takes_unbatched: bool = False
    #: the API's name in the reasons :meth:`inexpressible` gives (default: ``name``)
    api: str = ""
    #: adapters naming a group run in worker processes of their own, apart from every other
    #: adapter: for a framework that cannot be loaded into a process beside certain others
    process_group: ClassVar[str | None] = None
    #: modules the framework imports lazily on first use: imported once, before workers are forked
    #: from that state (:mod:`conformance.forkserver`), instead of in every worker
    preload_modules: ClassVar[tuple[str, ...]] = ()

    def configure_variant(self) -> None:
        """Apply ``self.variant``'s run-time settings; called once in the worker, before any case."""

    def variant_env(self) -> dict[str, str]:
        """Environment variables ``self.variant`` needs set before the framework is imported."""
        if self.variant is None:
            return {}
        variant = self.variants[self.variant]
        return dict(variant.env) if isinstance(variant, Variant) else {}

    def build_facts(self) -> dict[str, Any]:
        """What the framework says about the kernels it will pick here (CPU capability, library
        versions, device, compiler, threads): recorded in every results document and usable in
        ``when:`` conditions of the baseline as ``facts``. Called in the worker, after
        :meth:`configure_variant`."""
        return {}

    def version(self) -> str:
        import importlib.metadata  # (not at the top: see conformance/__init__.py)

        if self.distribution:
            try:
                return importlib.metadata.version(self.distribution)
            except importlib.metadata.PackageNotFoundError:
                return "unknown"
        return "unknown"

    def unsupported(self, case: Case) -> str | None:
        """Why this adapter cannot run ``case``, or None when it can."""
        if case.params.ndim in self.unsupported_ndims:
            return self.unsupported_ndims[case.params.ndim]
        if case.dtype in self.unsupported_dtypes:
            return self.unsupported_dtypes[case.dtype]
        if not self.expresses_out_channels and any(
            v.rule == "out_channels_divisible" for v in case.violations
        ):
            return (
                "C_out is inferred as weight.shape[1] * groups in this API, so a C_out not divisible by "
                "groups cannot be expressed"
            )
        return self.inexpressible(case)

    def inexpressible(self, case: Case) -> str | None:
        """Why the framework's users cannot write ``case`` with this API, or None: string padding,
        output_size, asymmetric padding and unbatched inputs against the ``takes_*`` declarations."""
        p, api = case.params, self.api or self.name
        if p.padding_mode is not None and p.padding_mode not in self.padding_modes:
            takes = ", ".join(sorted(self.padding_modes)) or "none"
            return f"{api} takes no padding={p.padding_mode!r} (string paddings it takes: {takes})"
        if p.output_size is not None and not self.takes_output_size:
            return f"{api} takes no output_size"
        if not p.is_symmetric and p.padding_mode is None and not self.takes_padding_pairs:
            if not self.folds_asymmetric_padding:
                return f"{api} takes symmetric padding only: (lo, hi) = {list(p.padding_pairs)} is not"
            if p.symmetric_padding is None:
                return (
                    f"{api} takes symmetric padding only, and (lo, hi) = {list(p.padding_pairs)} with "
                    f"output_padding {list(p.output_padding)} has no (padding, output_padding) form "
                    "(lo - hi + output_padding must lie in [0, max(stride, dilation)))"
                )
        if not case.batched and not self.takes_unbatched:
            return f"{api} takes batched inputs (N, C_in, *spatial) only; this case is unbatched"
        return None

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        """Compute the transposed convolution; return ``(N, C_out, *spatial_out)`` in x's dtype."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward()")

    def vjp(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        params: ConvParams,
        grad_out: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Optional: ``(grad_x, grad_weight, grad_bias)`` for the output cotangent ``grad_out``.

        Canonical layouts, the inputs' dtype; grad_bias is None when bias is None. Adapters that
        don't override it report the gradient checks as unsupported.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement vjp()")

    def layer_api(self) -> LayerIntrospection | None:
        """Layer adapters describe their layer classes for the layer-API section of the reports."""
        return None

    @property
    def has_vjp(self) -> bool:
        return type(self).vjp is not Adapter.vjp


def _import_target(spec: str) -> object:
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise AdapterLoadError(
            f"adapter spec {spec!r} must look like 'package.module:Class' or 'file.py:Class'"
        )
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise AdapterLoadError(f"adapter file {target!r} does not exist")
            # its sibling modules (the layer under test) import as they do beside it in its project,
            # also from an installed `conformance` script, whose sys.path lacks the working directory
            if str(path.resolve().parent) not in sys.path:
                sys.path.append(str(path.resolve().parent))
            module_name = f"_conformance_adapter_{abs(hash(str(path.resolve())))}"
            module_spec = importlib.util.spec_from_file_location(module_name, path)
            assert module_spec and module_spec.loader
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except AdapterLoadError:
        raise
    except Exception as exc:  # an adapter module may fail in any way while importing
        raise AdapterLoadError(
            f"cannot import adapter module {target!r}: {type(exc).__name__}: {exc}"
        ) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise AdapterLoadError(f"module {target!r} has no attribute {attr!r}") from None


def entry_point_adapters() -> dict[str, str]:
    """Installed plugin adapters: entry-point name -> 'module:Class'."""
    import importlib.metadata

    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def resolve_spec(spec: str) -> str:
    """A built-in name or plugin name -> its 'module:Class'; other specs pass through. A variant
    suffix (``torch[native]``) is not part of the resolved spec."""
    spec = split_variant(spec)[0]
    if ":" in spec:
        return spec
    known = {**entry_point_adapters(), **BUILTINS}
    if spec not in known:
        raise AdapterLoadError(f"unknown framework {spec!r} (known: {', '.join(sorted(known))})")
    return known[spec]


def load_adapter(spec: str) -> Adapter:
    """Instantiate the adapter ``spec`` names: built-in or plugin name, module:Class or file.py:Class."""
    obj = _import_target(resolve_spec(spec))
    if not (inspect.isclass(obj) and issubclass(obj, Adapter)):
        raise AdapterLoadError(f"{spec!r} is not a subclass of conformance.adapters.Adapter")
    try:
        adapter = obj()
    except Exception as exc:
        raise AdapterLoadError(f"cannot construct adapter {spec!r}: {type(exc).__name__}: {exc}") from None
    if not adapter.name:
        raise AdapterLoadError(f"adapter {spec!r} has no 'name'")
    variant = split_variant(spec)[1]
    if variant is not None:
        if variant not in adapter.variants:
            known = ", ".join(sorted(adapter.variants)) or "none"
            raise AdapterLoadError(f"adapter {spec!r}: unknown variant {variant!r} (known: {known})")
        adapter.variant = variant
        adapter.name = f"{adapter.name}[{variant}]"
        try:
            adapter.configure_variant()
        except Exception as exc:
            raise AdapterLoadError(
                f"cannot configure variant {spec!r}: {type(exc).__name__}: {exc}"
            ) from None
    return adapter


def importable_builtins() -> dict[str, str]:
    """Built-in frameworks whose package is installed, name -> spec (checked without importing)."""
    return {
        name: spec
        for name, spec in BUILTINS.items()
        if importlib.util.find_spec(BUILTIN_PACKAGES[name]) is not None
    }
