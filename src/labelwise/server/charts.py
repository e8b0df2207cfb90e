"""Inline SVG charts for the dashboard: pure functions of the figures dict (``store.stats``).

Every chart is sized by its ``viewBox`` only, so CSS scales it to its column; colours come from
CSS classes (``.chart .s-acc`` ...) so the dark theme can restyle them, with presentation
attributes as the fallback. Every text node goes through :func:`markupsafe.escape`: labels and
names are user content. Nothing to draw gives an empty (falsy) ``Markup``, and the template says
why in a sentence instead of showing an empty frame. Output is deterministic: the same figures
give byte-identical SVG (no ids from counters or clocks, fixed number formatting).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from markupsafe import Markup, escape

__all__ = ["dashboard_charts", "distribution_chart", "learning_curve_chart", "nice_ticks"]

#: Series of the learning curve: (key in the point, key of its interval, css class, legend, dashed).
_SERIES: tuple[tuple[str, str | None, str, str, bool], ...] = (
    ("accuracy", "accuracy", "s-acc", "Accuracy on random items", False),
    ("macro_f1", "macro_f1", "s-f1", "Macro-F1 on random items", False),
    ("cv_accuracy", None, "s-acc", "Cross-validated accuracy", True),
    ("cv_macro_f1", None, "s-f1", "Cross-validated macro-F1", True),
)
#: A multi-label project's accuracy is the subset accuracy (the whole label set right).
_SUBSET_LEGEND = {
    "Accuracy on random items": "Subset accuracy on random items",
    "Cross-validated accuracy": "Cross-validated subset accuracy",
}
_FALLBACK_COLOUR = {"s-acc": "#2f5bd3", "s-f1": "#c2410c"}
_NUDGE = {"s-acc": -4.0, "s-f1": 4.0}

_CURVE_W, _CURVE_H = 760, 340
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 52, 20, 58, 44


def _f(x: float) -> str:
    """A coordinate with one decimal, without a trailing ``.0`` (short, stable output)."""
    text = f"{x:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f} %"


def _count(n: float) -> str:
    return f"{round(n):,}".replace(",", "\u202f")  # narrow no-break space groups digits


def nice_ticks(lo: float, hi: float, target: int = 5, *, integer: bool = False) -> list[float]:
    """Round tick values covering ``[lo, hi]``: steps of 1, 2, 2.5 or 5 times a power of ten.

    The first tick is ``<= lo`` and the last ``>= hi``; ``lo == hi`` widens to one step.
    ``integer`` keeps to whole-number steps (counts of labels).
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi < lo:
        lo, hi = hi, lo
    span = hi - lo
    if span == 0:
        span = abs(hi) or 1.0
    raw = span / max(target, 1)
    power = 10 ** math.floor(math.log10(raw))
    steps = (m * power for m in (1, 2, 2.5, 5, 10))
    step = next(
        s for s in steps if s >= raw and (not integer or (s >= 1 and float(s).is_integer()))
    )
    start = math.floor(lo / step + 1e-9) * step
    ticks = []
    value = start
    while value < hi - 1e-9 * step:
        ticks.append(round(value, 10))
        value += step
    ticks.append(round(value, 10))
    if len(ticks) == 1:
        ticks.append(round(value + step, 10))
    return ticks


def _text(x: float, y: float, content: str, cls: str, anchor: str = "start") -> str:
    return (
        f'<text x="{_f(x)}" y="{_f(y)}" class="{cls}" text-anchor="{anchor}">'
        f"{escape(content)}</text>"
    )


def _svg(width: int, height: int, label: str, body: Iterable[str], cls: str) -> Markup:
    return Markup(
        f'<svg class="chart {cls}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg" '
        f'font-family="system-ui, sans-serif" font-size="12">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def _value(
    point: dict[str, Any], key: str, interval: str | None
) -> tuple[float, float, float] | None:
    """(value, low, high) of one series at one point, or None where it has no value."""
    if interval is None:
        v = point.get(key)
        return (float(v), float(v), float(v)) if isinstance(v, int | float) else None
    live = point.get("live")
    if not isinstance(live, dict) or not isinstance(live.get(key), int | float):
        return None
    v = float(live[key])
    low = live.get(f"{interval}_low")
    high = live.get(f"{interval}_high")
    return (
        v,
        float(low) if isinstance(low, int | float) else v,
        float(high) if isinstance(high, int | float) else v,
    )


def _segments(values: Sequence[tuple[float, tuple[float, float, float] | None]]) -> list[list[Any]]:
    """Runs of consecutive points that have a value (a gap breaks the line)."""
    runs: list[list[Any]] = [[]]
    for x, v in values:
        if v is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((x, v))
    return [r for r in runs if r]


def learning_curve_chart(curve: Sequence[dict[str, Any]], *, multi_label: bool = False) -> Markup:
    """Scores against the number of labels, one point per model version.

    Solid lines: accuracy and macro-F1 on the random exploration items each version served,
    with their 95 % interval as a band; dashed: the cross-validated scores on the labeled set.
    Empty ``Markup`` when no version has any score. ``multi_label``: the accuracy is the subset
    accuracy (the whole label set right), and the legend says so.
    """
    points = sorted(
        (p for p in curve if isinstance(p.get("labels"), int | float)),
        key=lambda p: (float(p["labels"]), p.get("version") or 0),
    )
    series = []
    for key, interval, cls, legend, dashed in _SERIES:
        if multi_label:
            legend = _SUBSET_LEGEND.get(legend, legend)
        values = [(float(p["labels"]), _value(p, key, interval)) for p in points]
        if any(v is not None for _, v in values):
            series.append((key, cls, legend, dashed, values))
    if not series:
        return Markup("")

    xs = [float(p["labels"]) for p in points]
    # A little room right of the last point, so it never sits on the frame.
    x_ticks = nice_ticks(0.0, max(max(xs) * 1.04, 1.0), integer=True)
    x_lo, x_hi = 0.0, x_ticks[-1]
    lows = [v[1] for *_, values in series for _, v in values if v is not None]
    y_min = max(0.0, min(lows) - 0.02)
    y_lo = min(math.floor(y_min * 10) / 10, 0.9)
    y_ticks = [t for t in nice_ticks(y_lo, 1.0) if t <= 1.0 + 1e-9]
    y_lo, y_hi = y_ticks[0], 1.0

    plot_w = _CURVE_W - _PAD_L - _PAD_R
    plot_h = _CURVE_H - _PAD_T - _PAD_B

    def sx(x: float) -> float:
        return _PAD_L + (x - x_lo) / (x_hi - x_lo) * plot_w

    def sy(y: float) -> float:
        y = min(max(y, y_lo), y_hi)
        return _PAD_T + (1 - (y - y_lo) / (y_hi - y_lo)) * plot_h

    body: list[str] = []
    # Grid and axes.
    for t in y_ticks:
        y = sy(t)
        body.append(
            f'<line class="grid" x1="{_f(_PAD_L)}" x2="{_f(_PAD_L + plot_w)}" y1="{_f(y)}" '
            f'y2="{_f(y)}" stroke="#d0d4da" stroke-width="1"/>'
        )
        body.append(_text(_PAD_L - 8, y + 4, f"{round(100 * t):d} %", "tick", "end"))
    for t in x_ticks:
        x = sx(t)
        body.append(
            f'<line class="axis" x1="{_f(x)}" x2="{_f(x)}" y1="{_f(_PAD_T + plot_h)}" '
            f'y2="{_f(_PAD_T + plot_h + 5)}" stroke="#8a929c" stroke-width="1"/>'
        )
        body.append(_text(x, _PAD_T + plot_h + 19, _count(t), "tick", "middle"))
    body.append(
        f'<line class="axis" x1="{_f(_PAD_L)}" x2="{_f(_PAD_L + plot_w)}" '
        f'y1="{_f(_PAD_T + plot_h)}" y2="{_f(_PAD_T + plot_h)}" stroke="#8a929c" stroke-width="1"/>'
    )
    body.append(_text(_PAD_L + plot_w / 2, _CURVE_H - 6, "labels", "axis-title", "middle"))

    # Bands first, so lines and points draw over them.
    for _key, cls, _legend, dashed, values in series:
        if dashed:
            continue
        for run in _segments(values):
            colour = _FALLBACK_COLOUR[cls]
            if len(run) == 1:
                # A lone point has no band to fill: an error bar with caps, nudged sideways so
                # the accuracy and macro-F1 bars at the same x stay apart.
                x, (_, low, high) = run[0]
                cx = sx(x) + _NUDGE[cls]
                for y1, y2, x1, x2 in (
                    (sy(low), sy(high), cx, cx),
                    (sy(low), sy(low), cx - 4, cx + 4),
                    (sy(high), sy(high), cx - 4, cx + 4),
                ):
                    body.append(
                        f'<line class="band-bar {cls}" x1="{_f(x1)}" x2="{_f(x2)}" '
                        f'y1="{_f(y1)}" y2="{_f(y2)}" stroke="{colour}" stroke-width="1.5" '
                        f'stroke-opacity="0.7"/>'
                    )
                continue
            upper = " ".join(f"{_f(sx(x))},{_f(sy(v[2]))}" for x, v in run)
            lower = " ".join(f"{_f(sx(x))},{_f(sy(v[1]))}" for x, v in reversed(run))
            body.append(
                f'<polygon class="band {cls}" points="{upper} {lower}" fill="{colour}" '
                f'fill-opacity="0.14"/>'
            )
    # Dots are tooltips and markers; with many versions they would hide the lines.
    radius = 3.5 if len(points) <= 20 else 2.2 if len(points) <= 60 else 1.4
    for _key, cls, legend, dashed, values in series:
        colour = _FALLBACK_COLOUR[cls]
        dash = ' stroke-dasharray="6 5"' if dashed else ""
        line_cls = f"line {cls}{' dashed' if dashed else ''}"
        for run in _segments(values):
            if len(run) > 1:
                path = " ".join(
                    f"{'M' if i == 0 else 'L'}{_f(sx(x))} {_f(sy(v[0]))}"
                    for i, (x, v) in enumerate(run)
                )
                body.append(
                    f'<path class="{line_cls}" d="{path}" fill="none" stroke="{colour}" '
                    f'stroke-width="2"{dash} stroke-linejoin="round"/>'
                )
            nudge = _NUDGE[cls] if len(run) == 1 and not dashed else 0.0
            for x, (v, low, high) in run:
                tip = f"{legend}: {_pct(v)} at {_count(x)} labels"
                if high > low:
                    tip += f" (95 % interval {_pct(low)} to {_pct(high)})"
                fill = "none" if dashed else colour
                r = radius * 0.85 if dashed else radius
                dot_cls = f"dot {cls}{' hollow' if dashed else ''}"
                body.append(
                    f'<circle class="{dot_cls}" cx="{_f(sx(x) + nudge)}" '
                    f'cy="{_f(sy(v))}" r="{_f(r)}" fill="{fill}" '
                    f'stroke="{colour}" stroke-width="1.5"><title>{escape(tip)}</title></circle>'
                )

    # Legend, in up to two rows above the plot.
    x, y = float(_PAD_L), 18.0
    for _key, cls, legend, dashed, _values in series:
        width = 30 + 7.2 * len(legend) + 22
        if x + width > _CURVE_W - _PAD_R and x > _PAD_L:
            x, y = float(_PAD_L), y + 20
        colour = _FALLBACK_COLOUR[cls]
        dash = ' stroke-dasharray="6 5"' if dashed else ""
        body.append(
            f'<line class="line {cls}{" dashed" if dashed else ""}" x1="{_f(x)}" '
            f'x2="{_f(x + 24)}" y1="{_f(y - 4)}" y2="{_f(y - 4)}" stroke="{colour}" '
            f'stroke-width="2"{dash}/>'
        )
        body.append(_text(x + 30, y, legend, "legend"))
        x += width
    n = len(points)
    label = f"Learning curve: scores of {n} model version{'s' if n != 1 else ''} against labels"
    return _svg(_CURVE_W, _CURVE_H, label, body, "chart-curve")


def distribution_chart(distribution: dict[str, int], *, max_label: int = 18) -> Markup:
    """Horizontal bars: how many items carry each label. Empty ``Markup`` when none do."""
    rows = [(str(k), int(v)) for k, v in distribution.items()]
    total = sum(v for _, v in rows)
    if not rows or total <= 0:
        return Markup("")
    row_h, top = 30, 4
    width = 460
    label_w, value_w = 120, 112
    bar_x = label_w + 8
    bar_w = width - bar_x - value_w
    biggest = max(v for _, v in rows)
    height = top * 2 + row_h * len(rows)
    body: list[str] = []
    for i, (name, count) in enumerate(rows):
        y = top + i * row_h
        short = name if len(name) <= max_label else name[: max_label - 1] + "\u2026"
        body.append(
            f'<text x="{label_w}" y="{_f(y + 19)}" class="bar-label" text-anchor="end">'
            f"<title>{escape(name)}</title>{escape(short)}</text>"
        )
        body.append(
            f'<rect class="bar-track" x="{bar_x}" y="{_f(y + 6)}" width="{bar_w}" height="18" '
            f'rx="3" fill="#eef0f3"/>'
        )
        w = bar_w * count / biggest if biggest else 0
        if count > 0:
            body.append(
                f'<rect class="bar" x="{bar_x}" y="{_f(y + 6)}" width="{_f(max(w, 2))}" '
                f'height="18" rx="3" fill="#2f5bd3"><title>{escape(name)}: {_count(count)}'
                f"</title></rect>"
            )
        body.append(
            _text(
                bar_x + bar_w + 10, y + 19, f"{_count(count)}  ({_pct(count / total)})", "bar-value"
            )
        )
    return _svg(
        width, height, f"Label distribution over {_count(total)} labeled items", body, "chart-bars"
    )


def dashboard_charts(figures: dict[str, Any]) -> dict[str, Markup]:
    """Every chart of the dashboard page, by name: ``curve`` and ``distribution``."""
    return {
        "curve": learning_curve_chart(
            figures.get("curve") or [], multi_label=bool(figures.get("multi_label"))
        ),
        "distribution": distribution_chart(figures.get("distribution") or {}),
    }
