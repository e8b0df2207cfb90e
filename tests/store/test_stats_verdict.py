"""The dashboard's stopping verdict on hand-made learning curves."""

from __future__ import annotations

import numpy as np

from labelwise.store.stats import _verdict


def _curve(labels, cv, live=None, kappa=1.0):
    points = []
    for i, (n, score) in enumerate(zip(labels, cv, strict=True)):
        est = None
        if live is not None:
            est = {
                "n": 20,
                "accuracy": live[i],
                "accuracy_low": live[i] - 0.1,
                "accuracy_high": min(1.0, live[i] + 0.1),
                "macro_f1": live[i],
                "macro_f1_low": live[i] - 0.1,
                "macro_f1_high": min(1.0, live[i] + 0.1),
            }
        points.append(
            {
                "version": i + 1,
                "labels": int(n),
                "cv_accuracy": score,
                "cv_macro_f1": score,
                "agreement_with_previous": kappa if i else None,
                "live": est,
            }
        )
    return points


N = np.array([20, 40, 80, 160, 320, 640])


def test_a_flattening_stable_curve_suggests_stopping():
    v = _verdict(_curve(N, (0.9 - 2.0 * N**-1.5).tolist()))
    assert v["expected_gain"]["gain"] < 0.005
    assert v["expected_gain"]["source"] == "cross-validation"
    assert v["flattening"] and v["stable"]
    assert v["verdict"] == "consider stopping"


def test_a_rising_curve_or_unstable_models_keep_labeling():
    rising = _verdict(_curve(N, (0.95 - 0.9 * N**-0.3).tolist()))
    assert rising["expected_gain"]["gain"] > 0.005 and not rising["flattening"]
    assert rising["verdict"] == "keep labeling"
    unstable = _verdict(_curve(N, (0.9 - 2.0 * N**-1.5).tolist(), kappa=0.8))
    assert unstable["flattening"] and unstable["verdict"] == "keep labeling"


def test_the_unbiased_points_are_used_once_there_are_enough():
    cv = (0.8 - 0.5 * N**-0.5).tolist()
    live = (0.9 - 0.5 * N**-0.5).tolist()
    v = _verdict(_curve(N, cv, live=live))
    assert v["expected_gain"]["source"] == "exploration items"
    assert abs(v["expected_gain"]["asymptote"] - 0.9) < 0.02
    assert v["estimate"]["version"] == 6 and v["estimate"]["accuracy"] == live[-1]


def test_too_few_versions_give_no_extrapolation():
    v = _verdict(_curve(N[:3], [0.5, 0.6, 0.7]))
    assert v["expected_gain"] is None and not v["flattening"]
