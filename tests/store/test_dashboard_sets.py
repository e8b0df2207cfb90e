"""The dashboard of a multi-label project (:mod:`labelwise.services.dashboard_sets`): the
unbiased estimate on exploration items, agreement on label sets, per-label counts, and the
verdict on macro-F1; every expected figure worked out by hand below."""

from __future__ import annotations

from typing import Any

import pytest

from explored import explored_version
from labelwise.label_sets import to_indicator
from labelwise.learning.multilabel_metrics import multilabel_scores
from labelwise.services.dashboard import dashboard, hide_colleagues
from labelwise.store.projects import get_project

LABELS = ("insult", "threat", "spam")

# Six exploration items: what the annotator answered and what the served version predicted.
TRUTH = ["insult", "insult;threat", "", "spam", "threat", ""]
PREDICTED = ["insult", "insult", "", "spam", "insult;threat", "spam"]


def _version(store: Any, pid: int, item_ids: list[int], predicted: list[str], **metrics: Any):
    """A ready version whose queue serves ``item_ids`` as exploration items."""
    with store.db.write() as s:
        explored_version(
            s,
            get_project(s, project_id=pid),
            list(zip(item_ids, predicted, strict=True)),
            n_labels=metrics.pop("n_labels", 10),
            metrics=metrics,
        )


def _figures(db: Any, pid: int) -> dict[str, Any]:
    with db.read() as s:
        return dashboard(s, get_project(s, project_id=pid))


def test_the_estimate_on_exploration_items_worked_by_hand(db, store):
    """Answers against predictions on the six items:

    ==========  ==============  ==============
    item        answer          predicted
    ==========  ==============  ==============
    1           insult          insult
    2           insult, threat  insult
    3           (none)          (none)
    4           spam            spam
    5           threat          insult, threat
    6           (none)          spam
    ==========  ==============  ==============

    Subset accuracy: items 1, 3, 4 exactly right, 3/6 = 1/2.
    insult: TP 2 (1, 2), FP 1 (5), FN 0: P 2/3, R 1, F1 4/5.
    threat: TP 1 (5), FP 0, FN 1 (2): P 1, R 1/2, F1 2/3.
    spam: TP 1 (4), FP 1 (6), FN 0: P 1/2, R 1, F1 2/3.
    Micro F1 = 2*4 / (2*4 + 2 + 1) = 8/11; macro F1 = (4/5 + 2/3 + 2/3) / 3 = 32/45.
    Hamming loss: 3 wrong cells (2: threat, 5: insult, 6: spam) of 18 = 1/6.
    """
    pid = store.project(6, labels=LABELS, multi_label=True)
    ids = store.item_ids(pid)
    cv = multilabel_scores(
        to_indicator(["insult"] * 5 + ["spam"], LABELS),
        to_indicator(["insult"] * 6, LABELS),
        LABELS,
    ).to_dict() | {"multi_label": True}
    _version(store, pid, ids, PREDICTED, cv=cv)
    a = store.annotator(pid, "a0")
    answered = {}
    while (assignment := store.next(pid, a)) is not None:
        value = TRUTH[ids.index(assignment.item.id)]
        store.submit(pid, a, assignment.item.id, value)
        answered[assignment.item.id] = value
    assert len(answered) == 6

    figures = _figures(db, pid)
    [point] = figures["curve"]
    live = point["live"]
    assert live["n"] == 6
    assert live["accuracy"] == pytest.approx(1 / 2)  # the subset accuracy
    assert live["micro_f1"] == pytest.approx(8 / 11)
    assert live["macro_f1"] == pytest.approx(32 / 45)
    assert live["hamming_loss"] == pytest.approx(1 / 6)
    assert live["macro_f1_low"] <= live["macro_f1"] <= live["macro_f1_high"]
    assert live["micro_f1_low"] <= live["micro_f1"] <= live["micro_f1_high"]
    assert live["accuracy_low"] < 1 / 2 < live["accuracy_high"]
    per_label = live["scores"]["per_label"]
    assert per_label["insult"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 4 / 5, "support": 2}
    )
    assert per_label["threat"]["f1"] == pytest.approx(2 / 3)
    assert per_label["spam"]["precision"] == pytest.approx(1 / 2)
    # The stopping verdict's estimate is this version's, on macro-F1.
    estimate = figures["stopping"]["estimate"]
    assert estimate["version"] == 1 and estimate["macro_f1"] == pytest.approx(32 / 45)
    # Cross-validated figures: subset accuracy stands for accuracy, per-label for per-class.
    assert point["cv_accuracy"] == pytest.approx(cv["subset_accuracy"])
    assert point["cv_macro_f1"] == pytest.approx(cv["macro_f1"])
    assert figures["per_class"] == cv["per_label"]
    assert figures["versions"][0]["cv_accuracy"] == pytest.approx(cv["subset_accuracy"])
    assert figures["multi_label"]["cv"]["multi_label"] is True
    # Label counts: the answers hold insult twice, threat twice, spam once; two are empty.
    assert figures["distribution"] == {"insult": 2, "threat": 2, "spam": 1}
    assert figures["multi_label"]["empty_sets"] == 2


def test_agreement_on_label_sets_worked_by_hand(db, store):
    """Two annotators on six shared items (labels insult, threat, spam):

    ====  ===============  ===============  =====
    item  a0               a1               MASI
    ====  ===============  ===============  =====
    1     insult           insult           0
    2     insult           insult, threat   2/3
    3     (none)           (none)           0
    4     threat           threat           0
    5     spam             insult           1
    6     insult, threat   insult, threat   0
    ====  ===============  ===============  =====

    Percent agreement (identical sets): 4/6.
    Alpha: n = 12 answers, each item's 2 ordered pairs weigh 1, so
    D_o = 2 (2/3 + 1) / 12 = 5/18. The answers: {insult} x4, {insult, threat} x3, {} x2,
    {threat} x2, {spam} x1. Ordered pairs of different sets, distance times counts, doubled:
    {insult}-{insult,threat} 4*3*2/3 = 8; {insult}-{} 8; {insult}-{threat} 8; {insult}-{spam} 4;
    {insult,threat}-{} 6; {insult,threat}-{threat} 3*2*2/3 = 4; {insult,threat}-{spam} 3;
    {}-{threat} 4; {}-{spam} 2; {threat}-{spam} 2. Sum 49, doubled 98;
    D_e = 98 / (12 * 11) = 49/66. Alpha = 1 - (5/18) / (49/66) = 1 - 55/147 = 92/147.
    Per-label kappa:
    insult: a0 yes on 1, 2, 6 (1/2), a1 yes on 1, 2, 5, 6 (2/3); agree on 5 of 6;
    p_e = (1/2)(2/3) + (1/2)(1/3) = 1/2; kappa = (5/6 - 1/2) / (1/2) = 2/3.
    threat: a0 yes on 4, 6 (1/3), a1 on 2, 4, 6 (1/2); agree on 5 of 6;
    p_e = (1/3)(1/2) + (2/3)(1/2) = 1/2; kappa = 2/3.
    spam: a0 yes on 5 (1/6), a1 never; agree on 5 of 6; p_e = (1/6)(0) + (5/6)(1) = 5/6;
    kappa = (5/6 - 5/6) / (1/6) = 0.
    """
    pid = store.project(7, labels=LABELS, overlap=1.0, multi_label=True)
    ids = store.item_ids(pid)
    a, b = store.annotators(pid, 2)
    first = ["insult", "insult", "", "threat", "spam", "insult;threat"]
    second = ["insult", "insult;threat", "", "threat", "insult", "insult;threat"]
    for item_id, x, y in zip(ids, first, second, strict=False):
        store.submit(pid, a, item_id, x)
        store.submit(pid, b, item_id, y)
    store.submit(pid, a, ids[6], "spam")  # one answer only: not shared
    agreement = _figures(db, pid)["agreement"]
    assert agreement["items"] == 6
    assert agreement["percent_agreement"] == pytest.approx(4 / 6)
    assert agreement["fleiss_kappa"] is None
    assert agreement["alpha_masi"] == pytest.approx(92 / 147, abs=1e-12)
    assert agreement["per_label_kappa"] == {
        "insult": pytest.approx(2 / 3, abs=1e-12),
        "threat": pytest.approx(2 / 3, abs=1e-12),
        "spam": pytest.approx(0.0, abs=1e-12),
    }
    [pair] = agreement["pairwise"]
    assert (pair["a"], pair["b"], pair["items"]) == ("a0", "a1", 6)
    assert pair["agreement"] == pytest.approx(4 / 6)
    assert pair["alpha_masi"] == pytest.approx(92 / 147, abs=1e-12)
    assert pair["per_label_kappa"] == agreement["per_label_kappa"]
    assert agreement["per_annotator"] == {"a0": pytest.approx(4 / 6), "a1": pytest.approx(4 / 6)}
    # An annotator sees the overall figures, not their colleagues'.
    figures = _figures(db, pid)
    hide_colleagues(figures, "a0")
    assert figures["agreement"]["pairwise"] == []
    assert figures["agreement"]["alpha_masi"] == pytest.approx(92 / 147, abs=1e-12)


def test_few_shared_items_give_no_agreement_figures(db, store):
    pid = store.project(3, labels=LABELS, overlap=1.0, multi_label=True)
    ids = store.item_ids(pid)
    a, b = store.annotators(pid, 2)
    for item_id in ids:
        store.submit(pid, a, item_id, "insult")
        store.submit(pid, b, item_id, "threat")
    agreement = _figures(db, pid)["agreement"]
    assert agreement["items"] == 3 and agreement["percent_agreement"] == 0.0
    assert agreement["alpha_masi"] is None
    assert agreement["per_label_kappa"] == {"insult": None, "threat": None, "spam": None}


def test_a_version_with_few_exploration_answers_has_no_estimate(db, store):
    pid = store.project(6, labels=LABELS, multi_label=True)
    ids = store.item_ids(pid)
    _version(store, pid, ids[:4], PREDICTED[:4])
    a = store.annotator(pid, "a0")
    for _ in range(4):
        assignment = store.next(pid, a)
        store.submit(pid, a, assignment.item.id, TRUTH[ids.index(assignment.item.id)])
    figures = _figures(db, pid)
    assert figures["curve"][0]["live"] is None
    assert figures["stopping"]["estimate"] is None
    assert figures["multi_label"]["cv"] is None
