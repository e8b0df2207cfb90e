"""The PyTorch MLP (``"mlp-torch"``), Monte Carlo dropout and the BALD strategy.

Skipped as a whole without torch, except under ``CI=true``, where a missing torch fails (see
``tests/needs.py``); nothing here needs a GPU (CUDA paths are exercised by
``benchmarks/gpu_scoring.py`` on a machine that has one).
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from labelwise import InvalidDataError, InvalidParameterError, ModelCapabilityError, Pool
from labelwise.models.registry import available_models, make_model
from labelwise.strategies.backends import bald_utilities
from labelwise.strategies.base import QueryContext
from labelwise.strategies.factory import make_strategy
from labelwise.strategies.query import query
from labelwise.strategies.registry import available_strategies
from labelwise.strategies.scorers import bald, kl_to_consensus
from labelwise.strategies.utility import Bald
from needs import need_module

torch = need_module("torch", "install PyTorch: pip install torch (CI: see .ci/run)")

from labelwise.models.torch_model import MLPTorchClassifier, resolve_device  # noqa: E402
from labelwise.models.torch_net import Dropout  # noqa: E402


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=400, n_features=8, n_informative=5, n_classes=3, random_state=0
    )
    return X, y


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return MLPTorchClassifier(random_state=0, n_threads=1).fit(X[:120], y[:120])


def _small(**params):
    """A small network: fast enough for the estimator checks' many fits."""
    return MLPTorchClassifier((16,), max_epochs=60, random_state=0, n_threads=1, **params)


@parametrize_with_checks([_small()])
def test_scikit_learn_estimator_contract(estimator, check):
    check(estimator)


# --- the scorer ----------------------------------------------------------------------------


def test_bald_matches_a_hand_computation():
    # Two members, each sure, of different classes: H(mean) = log 2, mean H = 0.
    np.testing.assert_allclose(bald([[[1.0, 0.0]], [[0.0, 1.0]]]), [np.log(2)])
    # Members agreeing on an unsure prediction: no disagreement, however unsure.
    np.testing.assert_allclose(bald([[[0.5, 0.5]], [[0.5, 0.5]]]), [0.0], atol=1e-15)
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=(5, 7))  # (members, samples, classes)
    mean = p.mean(axis=0)
    by_hand = np.array(
        [
            -sum(mean[n, c] * np.log(mean[n, c]) for c in range(4))
            + sum(p[m, n, c] * np.log(p[m, n, c]) for m in range(5) for c in range(4)) / 5
            for n in range(7)
        ]
    )
    np.testing.assert_allclose(bald(p), by_hand, rtol=1e-12)
    # The mutual information is also the mean KL divergence of the members from their mean.
    np.testing.assert_allclose(bald(p), kl_to_consensus(p), rtol=1e-10)
    # float32 input: float32 logarithms, float64 sums, close to the float64 result.
    np.testing.assert_allclose(bald(p.astype(np.float32)), bald(p), atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, (4, 6, 3), elements=st.floats(0.0, 1.0)),
    st.sampled_from([np.float32, np.float64]),
)
def test_bald_is_between_zero_and_log_k(raw, dtype):
    p = raw + 1e-9
    p = (p / p.sum(axis=2, keepdims=True)).astype(dtype)
    u = bald(p)
    assert u.dtype == np.float64 and u.shape == (6,)
    assert (u >= 0).all()
    assert (u <= np.log(3) + 1e-6).all()


def test_bald_refuses_misshapen_input():
    with pytest.raises(ValueError, match=r"\(n_members, n_samples, n_classes\)"):
        bald(np.ones((3, 2)))


# --- the model -----------------------------------------------------------------------------


def test_same_seed_same_weights_other_seed_other_weights(data):
    X, y = data
    a = MLPTorchClassifier(random_state=3, n_threads=1).fit(X[:100], y[:100])
    b = MLPTorchClassifier(random_state=3, n_threads=1).fit(X[:100], y[:100])
    c = MLPTorchClassifier(random_state=4, n_threads=1).fit(X[:100], y[:100])
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_it_learns_and_predicts_like_a_classifier(data, fitted):
    X, y = data
    proba = fitted.predict_proba(X[200:])
    assert proba.shape == (200, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(fitted.predict(X[200:]), fitted.classes_[proba.argmax(axis=1)])
    baseline = np.bincount(y[:120]).max() / 120
    assert (fitted.predict(X[200:]) == y[200:]).mean() > baseline + 0.2


def test_string_labels_and_the_held_out_share(data):
    X, y = data
    labels = np.array(["ant", "bee", "cat"], dtype=object)[y]
    model = MLPTorchClassifier(early_stopping=True, random_state=0, n_threads=1)
    model.fit(X[:200], labels[:200])
    assert model.classes_.tolist() == ["ant", "bee", "cat"]
    assert set(model.predict(X[:10])) <= {"ant", "bee", "cat"}
    assert len(model.validation_error_curve_) == model.n_epochs_
    assert 1 <= model.best_epoch_ <= model.n_epochs_
    # Too few labels to hold any out: the training loss is watched instead.
    tiny = MLPTorchClassifier(early_stopping=True, random_state=0, n_threads=1)
    tiny.fit(X[:8], np.array(["a", "b"] * 4))
    assert tiny.validation_error_curve_ is None


def test_clone_and_joblib_round_trip(data, fitted, tmp_path):
    X, _ = data
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "coefs_")
    # The fitted state is NumPy: the artefact loads and scores without a GPU.
    assert all(isinstance(w, np.ndarray) for w in fitted.coefs_ + fitted.intercepts_)
    path = tmp_path / "model.joblib"
    joblib.dump(fitted, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(
        loaded.predict_proba_samples(X[:50], 5, random_state=1),
        fitted.predict_proba_samples(X[:50], 5, random_state=1),
    )
    assert pickle.loads(pickle.dumps(fitted)).get_params() == fitted.get_params()


def test_sparse_memory_mapped_and_chunked_pools_give_the_same_outputs(data, tmp_path):
    X, y = data
    Xs = sp.csr_matrix(np.where(np.abs(X) > 0.5, np.abs(X), 0.0))
    model = MLPTorchClassifier(random_state=0, n_threads=1).fit(Xs[:150], y[:150])
    assert model.scaler_.__class__.__name__ == "MaxAbsScaler"  # "auto" keeps sparse sparse
    sparse = model.predict_proba(Xs)
    np.testing.assert_allclose(model.predict_proba(Xs.toarray()), sparse, atol=1e-6)
    path = tmp_path / "pool.npy"
    np.save(path, Xs.toarray())
    mapped = np.load(path, mmap_mode="r")  # read-only: no warning, no failure
    np.testing.assert_allclose(model.predict_proba(mapped), sparse, atol=1e-6)
    model.set_params(inference_batch_size=7)  # many uneven chunks, one ending in empty rows
    np.testing.assert_allclose(model.predict_proba(Xs), sparse, atol=1e-6)
    np.testing.assert_array_equal(model.predict_proba(X[:0]).shape, (0, 3))


def test_mc_dropout_samples_are_seeded_and_vary(data, fitted):
    X, _ = data
    a = fitted.predict_proba_samples(X[:60], 8, random_state=5)
    b = fitted.predict_proba_samples(X[:60], 8, random_state=5)
    c = fitted.predict_proba_samples(X[:60], 8, random_state=6)
    assert a.shape == (8, 60, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_allclose(a.sum(axis=2), 1.0, atol=1e-5)
    assert np.ptp(a, axis=0).max() > 1e-3  # dropout is on: the passes differ


def test_on_device_bald_equals_the_scorer_on_the_samples(data, fitted):
    X, _ = data
    samples = fitted.predict_proba_samples(X, 12, random_state=9)
    direct = fitted.bald_scores(X, 12, random_state=9)
    assert direct.shape == (400,) and direct.dtype == np.float64
    np.testing.assert_allclose(direct, bald(samples), atol=1e-6)
    assert (direct >= 0).all() and direct.max() > 0


def test_without_dropout_the_passes_agree_and_bald_is_zero(data):
    X, y = data
    model = MLPTorchClassifier(dropout=0.0, random_state=0, n_threads=1).fit(X[:80], y[:80])
    samples = model.predict_proba_samples(X[:30], 4, random_state=0)
    for s in samples:
        np.testing.assert_allclose(s, model.predict_proba(X[:30]), atol=1e-6)
    np.testing.assert_allclose(model.bald_scores(X[:30], 4, random_state=0), 0.0, atol=1e-6)


def test_dropout_drops_its_share_and_rescales_the_rest():
    generator = torch.Generator().manual_seed(0)
    out = Dropout(0.25, generator)(torch.ones(200_000))
    dropped = float((out == 0).float().mean())
    assert abs(dropped - 0.25) < 0.005
    np.testing.assert_allclose(out[out != 0].numpy(), 256 / 192)
    assert abs(float(out.mean()) - 1.0) < 0.01  # inverted dropout keeps the expectation


def test_device_auto_falls_back_to_the_cpu(data, monkeypatch):
    X, y = data
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    model = MLPTorchClassifier(max_epochs=3, random_state=0, n_threads=1).fit(X[:40], y[:40])
    assert model.device_ == "cpu"
    with pytest.raises(InvalidParameterError, match="device 'cuda' asked for.*no CUDA GPU"):
        MLPTorchClassifier(device="cuda").fit(X[:40], y[:40])
    with pytest.raises(InvalidParameterError, match="device must be .*got 'tpu'"):
        resolve_device("tpu")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"hidden_layer_sizes": ()}, "hidden_layer_sizes must be a non-empty tuple"),
        ({"dropout": 1.0}, r"dropout must be a number in \[0.0, 0.99\], got 1.0"),
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"scaling": "zscore"}, "scaling must be one of auto, standard, maxabs, none"),
        ({"class_weight": "even"}, "class_weight must be 'balanced'"),
        ({"n_threads": -2}, "n_threads must be a positive integer or None"),
    ],
)
def test_bad_parameters_are_named(data, params, message):
    X, y = data
    with pytest.raises(InvalidParameterError, match=message):
        MLPTorchClassifier(**params).fit(X[:30], y[:30])


def test_bad_inputs_are_named(data, fitted):
    X, y = data
    with pytest.raises(InvalidDataError, match="at least two classes, got one class"):
        MLPTorchClassifier().fit(X[:10], np.zeros(10))
    with pytest.raises(InvalidDataError, match="X has 5 features, but .* expecting 8"):
        fitted.predict_proba(X[:4, :5])
    bad = X[:20].copy()
    bad[3, 2] = np.nan
    with pytest.raises(InvalidDataError, match="NaN or infinity"):
        fitted.predict_proba(bad)
    with pytest.raises(InvalidParameterError, match="n_samples must be a positive integer"):
        fitted.predict_proba_samples(X[:4], 0)


# --- registries and the strategy -----------------------------------------------------------


def test_registered_and_torch_stays_lazy():
    assert "mlp-torch" in available_models()
    assert "bald" in available_strategies()
    assert isinstance(make_model("mlp-torch", random_state=1), MLPTorchClassifier)
    assert isinstance(make_strategy("bald"), Bald)
    code = (
        "import sys, labelwise, labelwise.strategies, labelwise.models.registry,"
        " labelwise.strategies.query; labelwise.make_strategy('bald');"
        " assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _pool(X, y, n_labeled=40):
    pool = Pool(X)
    labeled = np.random.default_rng(0).choice(len(X), n_labeled, replace=False)
    pool.label(labeled, y[labeled])
    return pool, labeled


def test_bald_query_picks_distinct_unlabeled_candidates(data):
    X, y = data
    pool, labeled = _pool(X, y)
    template = make_model("mlp-torch", random_state=0).set_params(n_threads=1)
    model = clone(template).fit(X[labeled], y[labeled])
    batch = query(pool, model, strategy="bald", batch_size=10, random_state=0, estimator=template)
    assert len(set(batch.indices.tolist())) == 10
    assert not pool.labeled_mask[batch.indices].any()
    assert [r.rank for r in batch.reasons] == list(range(1, 11))
    utilities = [r.utility for r in batch.reasons]
    assert utilities == sorted(utilities, reverse=True) and utilities[-1] >= 0
    again = query(pool, model, strategy="bald", batch_size=10, random_state=0)
    np.testing.assert_array_equal(again.indices, batch.indices)
    # The picks are the candidates of highest BALD, under the same seeded dropout masks.
    ctx = QueryContext(X, pool.unlabeled, labeled, y[labeled], model)
    picked = Bald().select(ctx, 10, np.random.default_rng(7))
    everything = bald_utilities(
        model, X, pool.unlabeled, n_samples=20, rng=np.random.default_rng(7)
    )
    np.testing.assert_array_equal(picked.indices, pool.unlabeled[np.argsort(-everything)[:10]])
    np.testing.assert_allclose(picked.utilities, np.sort(everything)[::-1][:10])
    # Only from the candidates given; diverse selectors and exploration compose with it.
    allowed = pool.unlabeled[::3]
    some = query(pool, model, strategy="bald+kmeans", batch_size=5, candidates=allowed)
    assert set(some.indices.tolist()) <= set(allowed.tolist())
    mixed = query(pool, model, strategy="bald+explore", batch_size=20, random_state=1)
    assert len(set(mixed.indices.tolist())) == 20


def test_bald_through_a_pipeline_and_from_samples_only(data):
    X, y = data
    pool, labeled = _pool(X, y)
    pipeline = make_pipeline(StandardScaler(), _small()).fit(X[labeled], y[labeled])
    batch = query(pool, pipeline, strategy="bald", batch_size=6, random_state=0)
    assert len(set(batch.indices.tolist())) == 6

    class SamplesOnly:
        """A model that gives its Monte Carlo samples but does not reduce them itself."""

        def __init__(self, inner):
            self.inner = inner
            self.classes_ = inner.classes_

        def predict_proba(self, X):
            return self.inner.predict_proba(X)

        def predict_proba_samples(self, X, n_samples, *, random_state=None):
            return self.inner.predict_proba_samples(X, n_samples, random_state=random_state)

    inner = pipeline[-1]
    Z = pipeline[0].transform(X)
    rows = np.arange(100, 400, dtype=np.intp)
    got = bald_utilities(
        SamplesOnly(inner), Z, rows, n_samples=6, rng=np.random.default_rng(2), chunk_size=64
    )
    assert got.shape == (300,) and (got >= 0).all()
    # Each chunk's seed comes from the generator, in order: recompute the first chunk by hand.
    seed = int(np.random.default_rng(2).integers(2**63))
    np.testing.assert_allclose(
        got[:64], bald(inner.predict_proba_samples(Z[100:164], 6, random_state=seed))
    )


def test_bald_names_a_model_without_dropout_samples(data):
    X, y = data
    pool, labeled = _pool(X, y)
    model = LogisticRegression(max_iter=500).fit(X[labeled], y[labeled])
    with pytest.raises(ModelCapabilityError, match="LogisticRegression does not.*mlp-torch"):
        query(pool, model, strategy="bald", batch_size=3)


# --- end to end ----------------------------------------------------------------------------


@pytest.mark.slow
def test_simulate_from_the_command_line(tmp_path):
    from sklearn.datasets import load_digits
    from typer.testing import CliRunner

    from labelwise.cli import app

    X, y = load_digits(return_X_y=True)  # the 8x8 digits scikit-learn ships
    keep = y < 4
    frame = pd.DataFrame(X[keep], columns=[f"p{i}" for i in range(64)])
    frame["label"] = y[keep]
    data = tmp_path / "digits.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "out"
    args = ["simulate", data, "--label-column", "label", "--model", "mlp-torch"]
    args += ["--strategies", "bald,random", "--seeds", "0", "--initial", "20"]
    args += ["--batch-size", "20", "--budget", "60", "--out", out]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "| bald |" in result.stdout
    results = json.loads((out / "results.json").read_text())
    assert [p["labels"] for p in results["bald"]["curves"][0]] == [20, 40, 60]
    assert json.loads((out / "run.json").read_text())["config"]["model"] == "mlp-torch"


@pytest.mark.slow
def test_the_worker_fits_scores_and_stores_the_model(tmp_path):
    from sqlalchemy import select

    from labelwise.datasets import bundled_path
    from labelwise.io.load import load_dataset
    from labelwise.services import worker
    from labelwise.services.setup import init_project
    from labelwise.store.annotators import create_annotator
    from labelwise.store.answers import submit_label
    from labelwise.store.models import Item, ModelVersion, QueueEntry
    from labelwise.store.projects import ProjectSettings, get_project

    # A text project: TF-IDF features, so the sparse path runs through the worker too.
    texts = load_dataset(bundled_path("sms-spam"))
    frame = pd.DataFrame({"text": texts.items[:80], "label": texts.labels[:80]})
    frame["id"] = [f"m{i}" for i in range(len(frame))]
    path = tmp_path / "sms.csv"
    frame.to_csv(path, index=False)
    settings = ProjectSettings(
        retrain_every=5, queue_size=10, model="mlp-torch", strategy="bald", features="tfidf"
    )
    op, _ = init_project(tmp_path / "proj", path, settings=settings)
    try:
        truth = dict(zip(frame["id"], frame["label"], strict=True))
        with op.db.write() as s:
            project = get_project(s, project_id=op.project_id)
            annotator, _ = create_annotator(s, project, name="ann", role="annotator")
            for item in s.scalars(select(Item).where(Item.project_id == project.id)).all()[:30]:
                submit_label(s, project, annotator, item_id=item.id, value=truth[item.external_id])
        assert worker.train_once(op.folder, op.db).status == "trained"
        with op.db.read() as s:
            version = s.scalars(select(ModelVersion)).one()
            queue = s.scalars(select(QueueEntry).where(QueueEntry.kind == "strategy")).all()
        assert queue and all(entry.reason["strategy"] == "bald" for entry in queue)
        stored = joblib.load(op.folder.root / version.artefact)
        assert isinstance(stored["model"], MLPTorchClassifier)
        assert all(isinstance(w, np.ndarray) for w in stored["model"].coefs_)
    finally:
        op.db.dispose()
