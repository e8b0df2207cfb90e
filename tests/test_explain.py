"""Explanations on real models: exact linear contributions and the words they mark in a text."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline

from labelwise.datasets import bundled_path
from labelwise.features import featurize
from labelwise.io.load import load_dataset
from labelwise.models.explain import (
    linear_contributions,
    term_weights,
    text_highlights,
    vectorizer_highlights,
    word_influence,
)
from labelwise.models.registry import ModelOutputs, make_model


@pytest.fixture(scope="module")
def sms():
    """The bundled SMS collection (first 1,500 messages), TF-IDF, and a fitted logreg model."""
    dataset = load_dataset(bundled_path("sms-spam")).subset(np.arange(1500))
    texts = np.asarray(dataset.items, dtype=object)
    y = np.asarray(dataset.labels).astype(str)
    X, featurizer = featurize(dataset, features="tfidf")
    X = sp.csr_matrix(X)
    model = make_model("logreg", random_state=0).fit(X, y)
    return texts, X, y, featurizer, model


def test_contributions_are_exact_and_the_largest_come_first(sms):
    texts, X, _, _, model = sms
    rows = X[:40]
    found = linear_contributions(model, rows, top=10_000)
    assert found is not None and len(found) == 40
    Z = model[:-1].transform(rows)
    w = model[-1].coef_[0]
    for i, c in enumerate(found):
        # every nonzero term is there and, with the intercept, they sum to the decision value
        total = c.weights.sum() + model[-1].intercept_[0]
        # the decision value in float64 (the model computes it in its float32 features)
        exact = (Z[i].astype(np.float64) @ w.astype(np.float64)).item() + model[-1].intercept_[0]
        assert total == pytest.approx(exact, rel=1e-6, abs=1e-9)
        assert total == pytest.approx(model.decision_function(rows[i])[0], rel=1e-5)
        expected = np.asarray(Z[i].multiply(w).todense()).ravel()
        top = np.argsort(-np.abs(expected), kind="stable")[: min(5, len(c.features))]
        assert set(c.features[: len(top)].tolist()) == set(top.tolist())
        assert np.all(np.diff(np.abs(c.weights)) <= 1e-12)
        assert (c.toward, c.against) == ("spam", "ham")


def test_a_spam_message_is_pushed_toward_spam_by_its_spam_words(sms):
    texts, X, y, featurizer, model = sms
    names = featurizer.get_feature_names_out()
    spam_rows = np.flatnonzero((y == "spam") & (model.predict(X) == "spam"))
    c = linear_contributions(model, X[spam_rows[:1]], top=5)[0]
    weights = term_weights(c, names)
    assert sum(w for _, w in weights) > 0  # on balance toward spam
    assert all(term in texts[spam_rows[0]].lower() for term, _ in weights if " " not in term)


def test_highlights_mark_the_terms_with_the_largest_contributions(sms):
    texts, X, _, featurizer, model = sms
    names = featurizer.get_feature_names_out()
    vectorizer = featurizer.vectorizer_
    for row in range(20):
        c = linear_contributions(model, X[row], top=3)[0]
        weights = dict(term_weights(c, names))
        spans = vectorizer_highlights(vectorizer, texts[row], weights)
        marked = {texts[row][s:e].lower() for s, e, _ in spans}
        words_of_top = {w for term in weights for w in term.split(" ")}
        assert marked <= words_of_top  # nothing outside the top terms is marked
        for term in weights:  # and every top term is marked
            assert set(term.split(" ")) <= marked


def test_text_highlights_spans_and_pairs():
    text = "Call NOW to claim, call now!"
    spans = text_highlights(text, {"call now": 1.0, "claim": -0.5}, ngram_range=(1, 2))
    assert [(text[s:e], w) for s, e, w in spans] == [
        ("Call", 0.5),
        ("NOW", 0.5),
        ("claim", -0.5),
        ("call", 0.5),
        ("now", 0.5),
    ]


def test_multiclass_contributions_favour_the_predicted_class():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    y = np.asarray(["a", "b", "c"])[np.argmax(X[:, :3], axis=1)]
    model = make_model("logreg", random_state=0).fit(X, y)
    found = linear_contributions(model, X[:30], top=6)
    scores = model.decision_function(X[:30])
    intercept = model[-1].intercept_
    for i, c in enumerate(found):
        k = list(model.classes_).index(c.toward)
        assert c.toward == model.predict(X[i : i + 1])[0]
        assert c.against is None
        # exact: the terms sum to the class's score above the mean score of all classes
        centred = scores[i, k] - scores[i].mean()
        assert c.weights.sum() + intercept[k] - intercept.mean() == pytest.approx(centred)


def test_models_that_are_not_linear_in_their_features_have_no_contributions(sms):
    _, X, y, _, _ = sms
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X[:200], y[:200])
    assert linear_contributions(forest, X[:2]) is None
    reduced = make_pipeline(TruncatedSVD(5, random_state=0), make_model("logreg")).fit(
        X[:200], y[:200]
    )
    assert linear_contributions(reduced, X[:2]) is None


def _planted_images(n=400, size=28, seed=0):
    """Noise images; the class is whether a bright 6×6 square sits at rows 4-9, columns 18-23."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 0.5, size=(n, size, size))
    y = rng.integers(0, 2, size=n)
    images[y == 1, 4:10, 18:24] += 0.5
    return images.reshape(n, -1), np.asarray(["clear", "marked"])[y]


@pytest.mark.parametrize("model_name", ["logreg", "forest"])
def test_the_occlusion_map_peaks_where_the_planted_feature_is(model_name):
    from labelwise.models.explain import occlusion_map

    X, y = _planted_images()
    model = make_model(model_name, random_state=0).fit(X, y)
    marked = X[np.flatnonzero(y == "marked")[:5]]
    for x in marked:
        found = occlusion_map(model, x, (28, 28), patch=4, baseline=X.mean(axis=0))
        assert found.target == "marked" and found.drop.shape == (7, 7)
        peak = np.unravel_index(np.argmax(found.drop), found.drop.shape)
        # patches of 4: the square covers patch rows 1-2 and patch columns 4-5
        assert peak[0] in (1, 2) and peak[1] in (4, 5), found.drop.round(3)
        assert found.drop[peak] > 0


def test_occlusion_map_checks_the_shape():
    from labelwise.models.explain import occlusion_map

    X, y = _planted_images(n=50)
    model = make_model("logreg").fit(X, y)
    with pytest.raises(ValueError, match="do not make an image"):
        occlusion_map(model, X[0], (20, 20))


def test_tree_shap_values_are_exact_and_find_the_deciding_feature():
    pytest.importorskip("shap")  # the `explain` extra; the dev install has it
    import shap

    from labelwise.models.explain import tree_contributions

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = np.where(X[:, 2] > 0, "yes", "no")
    model = make_model("forest", random_state=0).fit(X, y)
    found = tree_contributions(model, X[:20], top=4)
    assert found is not None
    expected = shap.TreeExplainer(model).expected_value
    base = float(np.ravel(expected)[1])
    proba = model.predict_proba(X[:20])[:, 1]
    for i, c in enumerate(found):
        assert (c.toward, c.against) == ("yes", "no")
        assert c.features[0] == 2  # the feature that decides the label
        assert base + c.weights.sum() == pytest.approx(proba[i], abs=1e-6)


def test_tree_contributions_refuse_other_models():
    pytest.importorskip("shap")
    from labelwise.models.explain import tree_contributions

    X = np.random.default_rng(0).normal(size=(50, 3))
    y = np.where(X[:, 0] > 0, "a", "b")
    assert tree_contributions(make_model("logreg").fit(X, y), X[:2]) is None


def _multi_label_scorer(weights: dict[str, dict[str, float]], thresholds: list[float]):
    """Texts to per-label probabilities: each label's probability is the sum of its words'
    weights (clipped to [0, 1]), as a multi-label model's outputs."""
    labels = list(weights)

    def score(texts):
        rows = [
            [
                min(1.0, sum(weights[label].get(w, 0.0) for w in t.lower().split()))
                for label in labels
            ]
            for t in texts
        ]
        return ModelOutputs(
            "proba", np.asarray(rows), np.asarray(labels, dtype=object), np.asarray(thresholds)
        )

    return score


def test_words_of_a_multi_label_model_explain_the_label_it_is_least_sure_of():
    # insult is at 0.9 (threshold 0.5: margin 0.8), threat at 0.25 with threshold 0.2 (margin
    # 0.0625): the words are threat's, though insult is the more probable label.
    score = _multi_label_scorer(
        {"insult": {"idiot": 0.9}, "threat": {"hurt": 0.2, "you": 0.05}}, [0.5, 0.2]
    )
    found = word_influence(score, "idiot I will hurt you")
    assert found.toward == "threat"
    assert found.against is None  # two labels, but not two classes of one decision
    assert dict(found.terms) == pytest.approx({"hurt": 0.2, "you": 0.05})


def test_explained_column_is_the_predicted_class_or_the_least_sure_label():
    classes = np.asarray(["a", "b", "c"], dtype=object)
    single = ModelOutputs("proba", np.asarray([[0.2, 0.5, 0.3]]), classes)
    assert single.explained_column(0) == 1
    # Margins from the thresholds (0.5, 0.1, 0.9): a (0.6 - 0.5) / 0.5 = 0.2,
    # b (0.3 - 0.1) / 0.9 = 0.22, c (0.9 - 0.8) / 0.9 = 0.11: c, though a and b are predicted.
    multi = ModelOutputs(
        "proba", np.asarray([[0.6, 0.3, 0.8]]), classes, np.asarray([0.5, 0.1, 0.9])
    )
    assert multi.explained_column(0) == 2


def test_a_multi_label_model_is_explained_by_the_classifier_of_its_least_sure_label():
    from sklearn.linear_model import LogisticRegression

    from labelwise.models.multilabel import LabelSetClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] + 0.5 * rng.normal(size=300) > 1.0])
    names = ["wide", "narrow"]
    y = [";".join(n for n, on in zip(names, row, strict=True) if on) for row in Y]
    model = LabelSetClassifier(LogisticRegression(), names).fit(X, y)
    rows = X[:20]
    found = linear_contributions(model, rows, top=4)
    out = ModelOutputs("proba", model.predict_proba(rows), model.classes_, model.thresholds_)
    assert found is not None and len(found) == 20
    for i, c in enumerate(found):
        j = out.explained_column(i)
        assert c.toward == names[j] and c.against is None
        # Exact: the explained label's own weights times the row's values.
        w = model.model_.estimators_[j].coef_[0]
        np.testing.assert_allclose(c.weights, w[c.features] * rows[i, c.features])
    assert {c.toward for c in found} == set(names)  # each label explains some rows


def test_a_multi_label_tree_ensemble_gets_shap_values_of_its_least_sure_label():
    pytest.importorskip("shap")
    from labelwise.models.explain import tree_contributions
    from labelwise.models.multilabel import LabelSetClassifier

    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    names = ["a", "b"]
    y = [";".join(n for n, on in zip(names, row, strict=True) if on) for row in (X[:, :2] > 0)]
    model = LabelSetClassifier(RandomForestClassifier(n_estimators=20, random_state=0), names)
    model.fit(X, y)
    found = tree_contributions(model, X[:10], top=3)
    out = ModelOutputs("proba", model.predict_proba(X[:10]), model.classes_, model.thresholds_)
    assert found is not None
    assert [c.toward for c in found] == [names[out.explained_column(i)] for i in range(10)]
    # Label a is driven by column 0, label b by column 1.
    for c in found:
        assert c.features[0] == names.index(c.toward)
