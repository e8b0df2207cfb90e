"""The dashboard's stopping verdict on hand-made learning curves."""

from __future__ import annotations

import numpy as np

from labelwise.services.dashboard import _verdict


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


def _rounds(curve):
    """The curve as the core's rounds: macro-F1 (the unbiased one where there is one) and the
    agreement of each version with the one before."""
    from labelwise.learning.evaluate import Metrics
    from labelwise.learning.history import Round

    rounds = []
    for i, p in enumerate(curve):
        f1 = p["live"]["macro_f1"] if p["live"] else p["cv_macro_f1"]
        metrics = Metrics(f1, f1, f1, f1, f1, {}, 20)
        rounds.append(
            Round(
                i,
                p["labels"],
                np.array([], dtype=np.intp),
                (),
                metrics,
                p["agreement_with_previous"],
            )
        )
    return rounds


def test_the_verdict_says_what_the_core_criteria_say():
    from labelwise.learning.stopping import ExpectedGain, Plateau, StabilizingPredictions
    from labelwise.services.dashboard import FIT_POINTS, MIN_GAIN, MIN_KAPPA, MORE, WINDOW

    plateau = Plateau(patience=WINDOW, min_delta=MIN_GAIN)
    stable = StabilizingPredictions(threshold=MIN_KAPPA, window=WINDOW)
    gain = ExpectedGain(more=MORE, min_gain=MIN_GAIN, min_points=FIT_POINTS)
    curves = [
        _curve(N, (0.9 - 2.0 * N**-1.5).tolist()),
        _curve(N, (0.95 - 0.9 * N**-0.3).tolist()),
        _curve(N, (0.9 - 2.0 * N**-1.5).tolist(), kappa=0.8),
        _curve(N, [0.5, 0.7, 0.8, 0.801, 0.802, 0.8]),
        _curve(N[:3], [0.5, 0.6, 0.7]),
    ]
    for curve in curves:
        v = _verdict(curve)
        rounds = _rounds(curve)
        assert v["plateau"] == (plateau.check(rounds) is not None)
        assert v["stable"] == (stable.check(rounds) is not None)
        assert v["flattening"] == (gain.check(rounds) is not None)
