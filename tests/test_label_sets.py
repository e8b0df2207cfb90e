"""Label sets: the stored form of a multi-label answer, and what users and files give."""

import numpy as np
import pytest

from labelwise import label_sets
from labelwise.exceptions import InvalidDataError, InvalidParameterError

LABELS = ["insult", "threat", "spam"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("threat;insult", ["threat", "insult"]),
        (" insult ; threat ;", ["insult", "threat"]),
        ('["spam", "insult"]', ["spam", "insult"]),
        (["insult", "insult", " spam"], ["insult", "spam"]),
        (("spam",), ["spam"]),
        (np.array(["spam"]), ["spam"]),
        ("", []),
        ("[]", []),
        (None, []),
        ([], []),
    ],
)
def test_parse_label_list_reads_every_given_form(raw, expected):
    assert label_sets.parse_label_list(raw) == expected


@pytest.mark.parametrize("raw", [3, {"a": 1}, "[1, 2]", ["a", 2], "[oops"])
def test_parse_label_list_names_what_is_wrong(raw):
    with pytest.raises(InvalidDataError, match="answer"):
        label_sets.parse_label_list(raw, what="the answer")


def test_encode_is_canonical_in_label_order_and_decode_inverts_it():
    assert label_sets.encode(["spam", "insult"], LABELS) == "insult;spam"
    assert label_sets.encode(["insult", "spam"], LABELS) == "insult;spam"
    assert label_sets.encode([], LABELS) == ""
    assert label_sets.decode("insult;spam") == ["insult", "spam"]
    assert label_sets.decode("") == [] and label_sets.decode(None) == []


def test_encode_names_an_unknown_label():
    with pytest.raises(InvalidParameterError, match="'rude' is not a label"):
        label_sets.encode(["insult", "rude"], LABELS)


def test_indicator_round_trip():
    values = ["insult;spam", "", "threat"]
    Y = label_sets.to_indicator(values, LABELS)
    assert Y.dtype == np.int8
    np.testing.assert_array_equal(Y, [[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    assert label_sets.from_indicator(Y, LABELS) == values
    assert label_sets.from_indicator([0, 1, 1], LABELS) == ["threat;spam"]
    with pytest.raises(InvalidDataError, match="'rude'"):
        label_sets.to_indicator(["rude"], LABELS)
    with pytest.raises(InvalidDataError, match="3 columns"):
        label_sets.from_indicator([[1, 0]], LABELS)


def test_label_names_may_not_hold_the_separator():
    label_sets.check_label_names(LABELS)
    with pytest.raises(InvalidParameterError, match="a;b"):
        label_sets.check_label_names(["a;b", "c"])
