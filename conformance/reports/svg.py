"""Pictures drawn by the report itself, as SVG inline in the HTML page (no library, nothing
fetched, works offline; inline SVG needs no xmlns): where in parameter space a framework diverges,
and how close passing results sit to tolerance.
Renders views only (:mod:`.views`); every label is escaped.
"""

from __future__ import annotations

import math
from html import escape

from conformance.reports.views import MapCell, ParameterMap

CELL_W, CELL_H, ROW_LABEL_W, HEAD_H = 92, 24, 120, 34


def _colour(cell: MapCell) -> str:
    """Green where nothing diverges; red (failing) or amber (known only) deepening with the rate."""
    if not cell.ran:
        return "#f6f8fa"
    if not cell.divergent:
        return "#dafbe1"
    strength = 0.25 + 0.75 * cell.rate
    hue = (207, 34, 46) if cell.failing else (212, 167, 44)
    r, g, b = (round(255 - (255 - c) * strength) for c in hue)
    return f"rgb({r},{g},{b})"


def parameter_map(pmap: ParameterMap) -> str:
    """A grid of divergent/ran per cell of one map for one framework."""
    width = ROW_LABEL_W + CELL_W * len(pmap.columns) + 2
    height = HEAD_H + CELL_H * len(pmap.rows) + 2
    title = f"{pmap.framework}: {pmap.title}"
    parts = [
        f'<svg class="map" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="12" class="t">{escape(title)}</text>',
    ]
    for j, column in enumerate(pmap.columns):
        x = ROW_LABEL_W + CELL_W * j + CELL_W / 2
        parts.append(f'<text x="{x:.0f}" y="{HEAD_H - 6}" text-anchor="middle">{escape(column)}</text>')
    for i, row in enumerate(pmap.rows):
        y = HEAD_H + CELL_H * i
        parts.append(f'<text x="{ROW_LABEL_W - 6}" y="{y + 16}" text-anchor="end">{escape(row)}</text>')
        for j, column in enumerate(pmap.columns):
            cell = pmap.cells.get((row, column), MapCell())
            x = ROW_LABEL_W + CELL_W * j
            tip = f"{row} · {column}: {cell.divergent} of {cell.ran} diverge ({cell.failing} failing)"
            parts.append(
                f'<g><title>{escape(tip)}</title><rect x="{x}" y="{y}" width="{CELL_W - 2}" '
                f'height="{CELL_H - 2}" fill="{_colour(cell)}" rx="2"/>'
                f'<text x="{x + CELL_W / 2 - 1:.0f}" y="{y + 16}" text-anchor="middle">'
                f"{escape(cell.text)}</text></g>"
            )
    parts.append("</svg>")
    return "".join(parts)


#: err/tolerance axis: 1e-8 .. 10 in half decades; the tolerance is at 1
LOW, HIGH, BINS_PER_DECADE = -8, 1, 2


def headroom_chart(samples: dict[tuple[str, str], list[float]]) -> str:
    """Per framework x dtype, a histogram of err/tol of passing results on a log axis, with the
    tolerance (1) and half of it marked: bars near the line are results close to failing."""
    if not samples:
        return ""
    bins = (HIGH - LOW) * BINS_PER_DECADE
    label_w, bin_w, row_h, top = 150, 14, 30, 18
    width = label_w + bins * bin_w + 20
    height = top + row_h * len(samples) + 24
    parts = [
        f'<svg class="headroom" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="err / tolerance of passing results">'
    ]

    def x_of(log: float) -> float:
        return label_w + (log - LOW) * BINS_PER_DECADE * bin_w

    for i, ((framework, dtype), values) in enumerate(samples.items()):
        y = top + row_h * i
        counts = [0] * bins
        for v in values:
            log = math.log10(v) if v > 0 else LOW
            counts[min(bins - 1, max(0, int((log - LOW) * BINS_PER_DECADE)))] += 1
        peak = max(counts) or 1
        parts.append(
            f'<text x="{label_w - 6}" y="{y + row_h - 10}" text-anchor="end">'
            f"{escape(framework)} · {escape(dtype)} ({len(values)})</text>"
        )
        for b, n in enumerate(counts):
            if n:
                h = max(1.5, (row_h - 6) * n / peak)
                parts.append(
                    f'<rect x="{label_w + b * bin_w}" y="{y + row_h - 4 - h:.1f}" width="{bin_w - 1}" '
                    f'height="{h:.1f}" fill="{"#cf222e" if b >= bins - BINS_PER_DECADE else "#0969da"}">'
                    f"<title>{n} results</title></rect>"
                )
    bottom = top + row_h * len(samples)
    for decade in range(LOW, HIGH + 1):
        x = x_of(decade)
        parts.append(f'<text x="{x:.0f}" y="{bottom + 14}" text-anchor="middle">1e{decade}</text>')
    for value, label in ((0.0, "tolerance"), (math.log10(0.5), "½")):
        x = x_of(value)
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{bottom}" stroke="#cf222e" '
            f'stroke-dasharray="{"0" if value == 0 else "3 2"}"/>'
            f'<text x="{x + 3:.0f}" y="{top - 6}" class="t">{label}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
