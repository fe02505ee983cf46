"""The case library travels with the package: `conformance run` with no paths runs the shipped
library and its baselines from any directory; paths replace it, --cases-also and
--known-divergences-also add to it. The outside-project test builds the wheel, installs it into a
fresh venv with torch only, and gates a small NumPy layer through an adapter written from
`conformance new-adapter`, from an empty directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import venv
from pathlib import Path

import pytest

from conformance import library
from conformance.reports.jsondoc import load_document  # full records from the packed results.json
from tests.helpers.pytest_helpers import DIRECT, ROOT, run_cli


def test_checkout_library_is_the_repositorys_cases():
    assert library.location() == ROOT / "cases"
    names = [p.name for p in library.case_files()]
    assert "conv_transpose2d.yaml" in names and not any(n.startswith("known_divergences") for n in names)
    assert "known_divergences.yaml" in [p.name for p in library.baseline_files()]


def test_cases_command_lists_the_library_from_anywhere(tmp_path):
    proc = run_cli("cases", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"case library: {ROOT / 'cases'}" in proc.stdout
    assert re.search(r"models\.yaml\s+\d+ cases", proc.stdout) and "known_divergences.yaml" in proc.stdout


USER_CASES = """\
cases:
  - id: my-upsampler
    op: conv_transpose2d
    input_shape: [1, 4, 5, 5]
    out_channels: 4
    kernel_size: 4
    stride: 2
    padding: 1
"""


def _run(tmp_path: Path, *args: str | Path, adapter: str = "DirectNumpy") -> tuple[int, dict]:
    out = tmp_path / f"r{len(list(tmp_path.glob('r*')))}"
    proc = run_cli("run", "--adapter", f"{DIRECT}:{adapter}", *args, "-q", "--report-dir", out, cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, load_document(out / "results.json")


def test_no_paths_runs_the_library_and_also_adds_user_cases(tmp_path):
    (tmp_path / "mine.yaml").write_text(USER_CASES)
    code, doc = _run(tmp_path, "-k", "groups-sweep or my-upsampler", "--cases-also", "mine.yaml")
    files = {Path(r["file"]).name for r in doc["results"]}
    assert code == 0 and {"conv_transpose2d.yaml", "mine.yaml"} <= files, files
    code, doc = _run(tmp_path, "mine.yaml")  # an explicit path replaces the library
    assert {r["file"] for r in doc["results"]} == {"mine.yaml"}


def test_known_divergences_also_adds_a_baseline(tmp_path):
    baseline = tmp_path / "mine_divergences.yaml"
    baseline.write_text(
        textwrap.dedent("""\
        divergences:
          - framework: bug-bias-missing
            case: "bias-*"
            check: forward
            reason: "planted: the bias is never added"
        """)
    )
    args = ["-k", "bias and conv_transpose1d", "--check", "forward"]
    code, doc = _run(tmp_path, *args, adapter="BiasMissing")
    assert code == 1, "the planted bug went unnoticed"
    code, doc = _run(tmp_path, *args, "--known-divergences-also", baseline, adapter="BiasMissing")
    statuses = {r["status"] for r in doc["results"] if r["case"].startswith("bias-")}
    assert "xfail" in statuses and "fail" not in statuses, statuses


# --- an outside project, from the built wheel ------------------------------------------------------

LAYER = '''\
"""A small NumPy transposed convolution: the layer under test of an outside project."""

import numpy as np


def conv_transpose(x, weight, bias, stride, padding, output_padding, dilation, groups):
    nd = weight.ndim - 2
    if x.ndim != nd + 2:
        raise ValueError(f"expected a rank-{nd + 2} input, got rank {x.ndim}")
    n, cin, *size = x.shape
    cout_g, kernel = weight.shape[1], weight.shape[2:]
    if groups < 1 or cin % groups:
        raise ValueError(f"groups={groups} must be >= 1 and divide C_in={cin}")
    for name, values, low in (("kernel", kernel, 1), ("stride", stride, 1), ("dilation", dilation, 1),
                              ("padding", padding, 0), ("output_padding", output_padding, 0),
                              ("input", size, 1)):
        if any(v < low for v in values):
            raise ValueError(f"{name} must be >= {low}, got {values}")
    if any(op >= s and op >= d for op, s, d in zip(output_padding, stride, dilation)):
        raise ValueError("output_padding must be smaller than stride or dilation")
    full = [(length - 1) * s + d * (k - 1) + 1 + op
            for length, k, s, d, op in zip(size, kernel, stride, dilation, output_padding)]
    out_len = [f - 2 * p for f, p in zip(full, padding)]
    if any(o < 1 for o in out_len):
        raise ValueError(f"output size {out_len} is too small")
    acc = np.zeros((n, groups, cout_g, *full))
    xg = x.astype(np.float64).reshape(n, groups, cin // groups, int(np.prod(size)))  # N may be 0
    wg = weight.astype(np.float64).reshape(groups, cin // groups, cout_g, *kernel)
    for tap in np.ndindex(*kernel):
        contrib = np.einsum("ngip,gio->ngop", xg, wg[(..., *tap)]).reshape(n, groups, cout_g, *size)
        window = tuple(slice(d * t, d * t + s * (length - 1) + 1, s)
                       for t, length, s, d in zip(tap, size, stride, dilation))
        acc[(..., *window)] += contrib
    crop = tuple(slice(p, p + o) for p, o in zip(padding, out_len))
    out = acc[(..., *crop)].reshape(n, groups * cout_g, *out_len)
    if bias is not None:
        out = out + bias.astype(np.float64).reshape(1, -1, *[1] * nd)
    return out.astype(x.dtype)
'''
# the planted bug: output_padding is dropped from the output length
PLANTED = ("+ 1 + op\n", "+ 1\n")


def _timed(
    argv: list[str | Path], cwd: Path, timings: dict[str, float], what: str
) -> subprocess.CompletedProcess:
    start = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=1500, env=env)
    timings[what] = round(time.perf_counter() - start, 1)
    return proc


def _not_built_from(folder: str, names: list[str]) -> set[str]:
    """Caches, virtualenvs and build outputs; reports/ and build/ only at the top (conformance/reports
    is a package)."""
    junk = {".git", ".nox", ".venv", ".hypothesis", "__pycache__"}
    skipped = {n for n in names if n in junk or n.endswith(("_cache", ".egg-info"))}
    if Path(folder) == ROOT:
        skipped |= {n for n in names if n in {"reports", "build", "dist"}}
    return skipped


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, float]]:
    """(the fresh venv's bin/, an empty project directory, seconds per step)."""
    root = tmp_path_factory.mktemp("outside")
    timings: dict[str, float] = {}
    source = root / "src"  # build from a copy: the checkout stays as it is (no build/ in it)
    shutil.copytree(ROOT, source, ignore=_not_built_from)
    proc = _timed(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", source, "-w", root / "dist"],
        root,
        timings,
        "wheel",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (root / "dist").glob("conformance-*.whl")
    venv.create(root / "venv", with_pip=True)
    bin_dir = root / "venv" / "bin"
    proc = _timed(
        [bin_dir / "python", "-m", "pip", "install", "-q", "torch==2.13.0", wheel], root, timings, "install"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    project = root / "project"
    project.mkdir()
    (project / "mylayer.py").write_text(LAYER)
    proc = _timed([bin_dir / "conformance", "new-adapter", "mine"], project, timings, "new-adapter")
    assert proc.returncode == 0, proc.stderr
    adapter = project / "mine_adapter.py"
    text, n = re.subn(
        r"        raise NotImplementedError\(.*TODO 3.*\)\n",
        lambda m: "        return mylayer.conv_transpose(x, weight, bias, **kit.per_axis_kwargs(params))\n",
        adapter.read_text(),
    )
    assert n == 1, "the skeleton's TODO 3 line moved"
    text = text.replace("# import my_framework as mf", "import mylayer")
    text = text.replace(
        "framework_modules: ClassVar[tuple[str, ...]] = ()", 'framework_modules = ("mylayer",)'
    )
    adapter.write_text(text)
    return bin_dir, project, timings


@pytest.mark.e2e
def test_outside_project_gates_its_layer_from_the_installed_wheel(outside):
    bin_dir, project, timings = outside
    listing = _timed([bin_dir / "conformance", "cases"], project, timings, "cases")
    assert listing.returncode == 0 and "site-packages/conformance/_cases" in listing.stdout, listing.stdout
    run = [bin_dir / "conformance", "run", "--adapter", "mine_adapter.py:MineAdapter", "-n", "2", "-q"]
    proc = _timed(run, project, timings, "first report")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    written = {p.name for p in (project / "reports").iterdir()}
    wanted = {"results.json", "report.md", "report.html", "summary.md", "results.junit.xml"}
    assert wanted <= written, f"missing reports: {wanted - written}"
    document = load_document(project / "reports" / "results.json")
    shipped = len(list(Path(listing.stdout.splitlines()[0].split(": ", 1)[1]).glob("[!k]*.yaml")))
    assert len({r["file"] for r in document["results"]}) == shipped, "not every shipped case file ran"
    passed = document["summary"]["mine"]["pass"]
    assert passed > 1000, document["summary"]

    # the shipped baselines apply from here: torch's known oneDNN divergence is an xfail, not a failure
    torch = _timed(
        [
            bin_dir / "conformance",
            "run",
            "--framework",
            "torch",
            "--case",
            "output-zero-*",
            "-q",
            "--report-dir",
            "t",
        ],
        project,
        timings,
        "torch slice",
    )
    assert torch.returncode == 0, torch.stderr[-3000:]
    assert load_document(project / "t" / "results.json")["summary"]["torch"]["xfail"] >= 1

    (project / "mylayer.py").write_text(LAYER.replace(*PLANTED))
    bug = _timed([*run, "-k", "conv_transpose2d", "--report-dir", "bug"], project, timings, "planted bug")
    assert bug.returncode == 1, bug.stdout[-2000:]
    failing = [r for r in load_document(project / "bug" / "results.json")["results"] if r["status"] == "fail"]
    assert failing and all(any(r["params"]["output_padding"]) for r in failing), (
        "a case without output_padding failed"
    )
    assert failing[0]["case"] in bug.stderr, "the failing case is not named on the console"
    for name in ["report.md", "summary.md", "results.junit.xml"]:
        text = (project / "bug" / name).read_text()
        assert any(r["case"] in text for r in failing), f"{name} names none of the failing cases"
    print(f"outside-project timings (s): {timings}")
