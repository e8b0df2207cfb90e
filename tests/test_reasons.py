"""One reason type: its kinds, its wording, and the JSON stored with queues and leases."""

from __future__ import annotations

import json
from typing import get_args

import pytest

from labelwise.strategies.query import describe_reason
from labelwise.strategies.reasons import WORDING, Kind, Reason, ReasonKind, neutral_summary


def test_the_kinds_are_declared_once():
    assert set(get_args(ReasonKind)) == {k.value for k in Kind}
    assert set(WORDING) == set(Kind)
    assert Reason("overlap").kind is Kind.OVERLAP  # a kind named as a string is the enum
    with pytest.raises(ValueError, match="hunch"):
        Reason("hunch")


@pytest.mark.parametrize("kind", ["cold-start", "typical", "exploration"])
def test_the_ranking_says_the_kinds_own_sentence(kind):
    assert describe_reason(kind, (), None, {}) == WORDING[Kind(kind)].summary


def test_a_strategy_reason_is_written_as_before():
    reason = Reason(
        "strategy",
        "margin",
        "the model gives 51% to spam and 49% to ham",
        utility=0.98,
        rank=1,
        class_split=(("spam", 0.51), ("ham", 0.49)),
        output_kind="proba",
    )
    assert reason.to_dict() == {
        "kind": "strategy",
        "strategy": "margin",
        "summary": "the model gives 51% to spam and 49% to ham",
        "utility": 0.98,
        "rank": 1,
        "class_split": [["spam", 0.51], ["ham", 0.49]],
        "output_kind": "proba",
        "details": {},
    }
    assert Reason.from_dict(json.loads(json.dumps(reason.to_dict()))) == reason
    assert reason.predicted == "spam"
    assert reason.guess == {"label": "spam", "confidence": 0.51}


def test_stored_reasons_of_every_shape_read_back_and_write_back_the_same():
    stored = [
        {"kind": "overlap", "summary": WORDING[Kind.OVERLAP].summary},
        {"kind": "overlap", "summary": WORDING[Kind.OVERLAP].summary, "rank": 4},
        {"kind": "fallback", "summary": WORDING[Kind.FALLBACK].summary},
        {"kind": "strategy", "summary": "the model is unsure"},  # a release-0001 database
        {
            "kind": "exploration",
            "strategy": "default",
            "summary": "random exploration pick: keeps the accuracy estimate unbiased",
            "utility": None,
            "rank": None,
            "class_split": [["ham", 0.8], ["spam", 0.2]],
            "output_kind": "proba",
            "details": {},
            "neighbors": [{"item_id": 3, "label": "ham", "similarity": 0.9, "preview": "hi"}],
            "neighbors_floor": 0.31,
            "far_from_labeled": False,
            "drivers": {"toward": "ham", "terms": [["hi", 0.4]], "spans": [], "method": "linear"},
            "duplicates": [{"item_id": 9, "similarity": 0.99, "preview": "hi!"}],
            "from_a_later_release": [1, 2],
        },
    ]
    for data in stored:
        assert Reason.from_dict(data).to_dict() == data
    assert Reason.from_dict({}, kind="routine").kind is Kind.ROUTINE
    assert Reason.from_dict({"rank": 2}).to_dict() == {"kind": "strategy", "rank": 2}


def test_withheld_the_reason_says_why_without_the_guess():
    votes = Reason("strategy", "qbc", "the committee disagrees", details={"votes": {"a": 2}})
    assert votes.withheld_summary() == "the committee of 2 models disagrees about this item"
    far = Reason("strategy", "kcenter", "unlike anything", details={"distance_to_labeled": 2.0})
    assert far.withheld_summary() == "unlike anything"
    assert Reason("strategy", "margin", "51% spam").withheld_summary() == (
        WORDING[Kind.STRATEGY].neutral
    )
    assert neutral_summary("audit") == "" and neutral_summary("unknown") == ""
    # A typical item was chosen before any model: nothing to anchor on, so it says why.
    assert Reason.of("typical").withheld_summary() == (
        "a typical item of its part of the pool: chosen before any model, so the first labels "
        "cover the pool (cold start)"
    )
    assert Reason.of("overlap").summary == WORDING[Kind.OVERLAP].summary
