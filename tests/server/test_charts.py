"""The dashboard's SVG charts: escaped text, well-formed SVG, empty states, many points."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from markupsafe import Markup

from labelwise.server.charts import (
    dashboard_charts,
    distribution_chart,
    learning_curve_chart,
    nice_ticks,
)

HOSTILE = "<script>alert(1)</script>"
SVG = "{http://www.w3.org/2000/svg}"


def _point(
    version: int, labels: int, *, live: bool = True, cv: float | None = 0.8
) -> dict[str, Any]:
    return {
        "version": version,
        "labels": labels,
        "created_at": "2026-01-01T00:00:00Z",
        "cv_accuracy": cv,
        "cv_macro_f1": None if cv is None else cv - 0.05,
        "agreement_with_previous": None,
        "live": (
            {
                "n": 20,
                "accuracy": 0.9,
                "accuracy_low": 0.7,
                "accuracy_high": 0.97,
                "macro_f1": 0.85,
                "macro_f1_low": 0.6,
                "macro_f1_high": 0.95,
            }
            if live
            else None
        ),
    }


def _figures(curve: list[dict[str, Any]], distribution: dict[str, int]) -> dict[str, Any]:
    return {"curve": curve, "distribution": distribution}


def _parse(svg: Markup) -> ET.Element:
    root = ET.fromstring(str(svg))
    assert root.tag == f"{SVG}svg"
    assert root.get("viewBox")
    assert root.get("width") is None and root.get("height") is None  # CSS sizes it
    return root


def _no_inline_style(svg: Markup) -> None:
    assert "style=" not in str(svg)  # the CSP forbids inline styles


def test_labels_are_escaped_in_the_distribution() -> None:
    svg = distribution_chart({HOSTILE: 3, 'a "quoted" & <b>': 2})
    assert isinstance(svg, Markup)
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    root = _parse(svg)
    texts = "".join(root.itertext())
    assert HOSTILE in texts  # shown as text, not markup
    _no_inline_style(svg)


def test_long_labels_are_shortened_with_the_full_name_in_a_tooltip() -> None:
    name = "x" * 80
    root = _parse(distribution_chart({name: 1}))
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert name in titles
    shown = []
    for t in root.iter(f"{SVG}text"):
        title = t.find(f"{SVG}title")
        shown.append(title.tail if title is not None else t.text)
    assert "x" * 17 + "…" in shown


def test_empty_figures_give_empty_markup() -> None:
    charts = dashboard_charts({})
    assert set(charts) >= {"curve", "distribution"}
    assert all(isinstance(c, Markup) and not c for c in charts.values())
    assert not dashboard_charts(_figures([], {"ham": 0, "spam": 0}))["distribution"]
    # Versions without any score (cross-validation impossible, no exploration answers).
    assert not learning_curve_chart([_point(1, 10, live=False, cv=None)])


@pytest.mark.parametrize("n", [1, 2, 250])
def test_curve_for_one_few_and_many_points(n: int) -> None:
    curve = [_point(v, 20 * v, live=v % 3 != 0) for v in range(1, n + 1)]
    svg = learning_curve_chart(curve)
    root = _parse(svg)
    dots = list(root.iter(f"{SVG}circle"))
    live = sum(p["live"] is not None for p in curve)
    assert len(dots) == 2 * n + 2 * live  # two dashed series everywhere, two live ones
    legend = "".join(root.itertext())
    assert "Cross-validated accuracy" in legend
    assert "Accuracy on random items" in legend
    _no_inline_style(svg)
    # Every coordinate stays inside the view box.
    _, _, width, height = (float(v) for v in root.get("viewBox", "").split())
    for c in dots:
        assert 0 <= float(c.get("cx", -1)) <= width
        assert 0 <= float(c.get("cy", -1)) <= height


def test_a_gap_in_the_live_scores_breaks_the_line() -> None:
    curve = [_point(1, 10), _point(2, 20), _point(3, 30, live=False), _point(4, 40), _point(5, 50)]
    root = _parse(learning_curve_chart(curve))
    solid = [p for p in root.iter(f"{SVG}path") if "dashed" not in (p.get("class") or "")]
    assert len(solid) == 4  # accuracy and macro-F1, two runs each


def test_output_is_deterministic() -> None:
    figures = _figures([_point(v, 15 * v) for v in range(1, 8)], {"a": 3, "b": 9})
    assert dashboard_charts(figures) == dashboard_charts(figures)


def test_scores_outside_zero_one_do_not_escape_the_plot() -> None:
    point = _point(1, 5)
    point["live"]["accuracy_low"] = -0.2
    point["live"]["accuracy_high"] = 1.3
    root = _parse(learning_curve_chart([point]))
    _, _, _, height = (float(v) for v in root.get("viewBox", "").split())
    for line in root.iter(f"{SVG}line"):
        assert 0 <= float(line.get("y1", 0)) <= height


@pytest.mark.parametrize(
    ("lo", "hi", "integer"),
    [(0, 1, False), (0, 12, True), (0.93, 1.0, False), (0, 5000, True), (3, 3, False)],
)
def test_nice_ticks_cover_the_range(lo: float, hi: float, integer: bool) -> None:
    ticks = nice_ticks(lo, hi, integer=integer)
    assert len(ticks) >= 2
    assert ticks[0] <= lo and ticks[-1] >= hi
    assert ticks == sorted(ticks)
    if integer:
        assert all(float(t).is_integer() for t in ticks)
