"""Times modAL and scikit-activeml queries; run by ``speed.py`` inside the peers' own venv.

    python _speed_peers.py SPEC.json   ->  one JSON object per line on stdout

SPEC holds the pool file (``.npy``), the labeled rows and their labels, the batch size, the
repeats and the methods to run. Each method is timed on the same fitted logistic regression
(committee: five bootstrap clones), with the peak of memory allocated during the call.
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    X = np.load(spec["pool"], mmap_mode="r")
    X = np.ascontiguousarray(X)  # in memory, as the peers expect an array
    labeled = np.asarray(spec["labeled"])
    y_lab = np.asarray(spec["y"])
    batch = spec["batch"]
    model = LogisticRegression(max_iter=200).fit(X[labeled], y_lab)
    y = np.full(len(X), np.nan)
    y[labeled] = y_lab

    def skal_clf():
        from skactiveml.classifier import SklearnClassifier

        clf = SklearnClassifier(LogisticRegression(max_iter=200), classes=np.unique(y_lab))
        return clf.fit(X[labeled], y_lab)

    def committee():
        from skactiveml.classifier import SklearnClassifier

        rng = np.random.default_rng(0)
        members = []
        for _ in range(5):
            rows = rng.choice(labeled, size=len(labeled), replace=True)
            clf = SklearnClassifier(LogisticRegression(max_iter=200), classes=np.unique(y_lab))
            members.append(clf.fit(X[rows], y[rows]))
        return members

    def run(name):
        if name == "modal entropy":
            from modAL.uncertainty import entropy_sampling

            return lambda: entropy_sampling(model, X, n_instances=batch)
        if name == "modal margin":
            from modAL.uncertainty import margin_sampling

            return lambda: margin_sampling(model, X, n_instances=batch)
        if name == "modal ranked batch":
            from modAL.batch import uncertainty_batch_sampling
            from modAL.models import ActiveLearner

            learner = ActiveLearner(
                estimator=LogisticRegression(max_iter=200), X_training=X[labeled], y_training=y_lab
            )
            return lambda: uncertainty_batch_sampling(learner, X, n_instances=batch)
        from skactiveml import pool

        if name in ("skactiveml entropy", "skactiveml margin"):
            method = "entropy" if name.endswith("entropy") else "margin_sampling"
            qs, clf = pool.UncertaintySampling(method=method, random_state=0), skal_clf()
            return lambda: qs.query(X, y, clf, fit_clf=False, batch_size=batch)
        if name == "skactiveml qbc":
            qs, members = pool.QueryByCommittee(method="vote_entropy", random_state=0), committee()
            return lambda: qs.query(X, y, members, fit_ensemble=False, batch_size=batch)
        if name == "skactiveml coreset":
            qs = pool.CoreSet(random_state=0)
            return lambda: qs.query(X, y, batch_size=batch)
        if name == "skactiveml badge":
            qs, clf = pool.Badge(random_state=0), skal_clf()
            return lambda: qs.query(X, y, clf, fit_clf=False, batch_size=batch)
        if name == "skactiveml clue":
            qs, clf = pool.Clue(random_state=0), skal_clf()
            return lambda: qs.query(X, y, clf, fit_estimator=False, batch_size=batch)
        if name == "skactiveml typiclust":
            qs = pool.TypiClust(random_state=0)
            return lambda: qs.query(X, y, batch_size=batch)
        raise ValueError(name)

    for name in spec["methods"]:
        try:
            call = run(name)
            times, peak = [], 0
            for _ in range(spec["repeats"]):
                tracemalloc.start()
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    call()
                times.append(time.perf_counter() - start)
                peak = max(peak, tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
                if times[-1] > spec["slow"]:
                    break  # one run of a slow method is enough
            out = {"method": name, "seconds": float(np.median(times)), "peak_mb": peak / 2**20}
        except Exception as exc:  # reported in the table, never hidden
            tracemalloc.stop()
            out = {"method": name, "error": f"{type(exc).__name__}: {exc}"[:200]}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
