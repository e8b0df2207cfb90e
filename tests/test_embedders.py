"""Embedders: the protocol, the registry, and wordllama loaded from its wheel with no network."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest

from labelwise.exceptions import InvalidParameterError
from labelwise.features import Embedder, available_embedders, make_embedder, parse_features
from labelwise.features.embedders import WordLlamaEmbedder, normalize_rows


def test_wordllama_embeds_texts_to_unit_rows_of_its_dimension():
    embedder = make_embedder("wordllama")
    assert isinstance(embedder, Embedder)
    assert (embedder.name, embedder.dim, embedder.modality) == ("wordllama", 256, "text")
    rows = embedder.embed(["Free entry to win a prize", "see you at dinner", ""])
    assert rows.shape == (3, 256) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows[:2], axis=1), 1.0, rtol=1e-5)
    assert not rows[2].any()  # nothing to embed: a zero row, never NaN
    assert make_embedder("wordllama") is embedder  # loaded once per process


def test_wordllama_rows_are_the_normalised_mean_of_the_text_tokens():
    embedder = make_embedder("wordllama")
    assert isinstance(embedder, WordLlamaEmbedder)
    texts = ["the cat sat on the mat", "a dog"]
    ids = embedder.token_ids(texts)
    table = embedder._table
    expected = normalize_rows(np.stack([table[i].mean(axis=0) for i in ids]))
    np.testing.assert_allclose(embedder.embed(texts), expected, atol=1e-6)
    # batching changes nothing
    np.testing.assert_allclose(embedder.embed(texts[:1]), embedder.embed(texts)[:1], atol=1e-7)


def test_meaning_is_closer_than_wording():
    rows = make_embedder("wordllama").embed(
        ["this film was wonderful", "a truly great movie", "the invoice is overdue"]
    )
    assert rows[0] @ rows[1] > rows[0] @ rows[2]


def test_wordllama_loads_with_the_network_unreachable():
    # A fresh process whose sockets all fail to connect: the weights and the tokenizer come from
    # the installed wheel, never from a download.
    script = """
import socket
def refuse(*args, **kwargs):
    raise OSError("network unreachable (test)")
socket.socket.connect = refuse
socket.create_connection = refuse
from labelwise.features import make_embedder
rows = make_embedder("wordllama").embed(["offline please"])
print(rows.shape[1])
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "256"


def test_importing_it_leaves_the_root_logger_alone():
    script = """
import logging
from labelwise.features import make_embedder
make_embedder("wordllama")
print(len(logging.getLogger().handlers), logging.getLogger().level)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", str(logging.WARNING)]


def test_bad_names_get_one_clear_line():
    with pytest.raises(InvalidParameterError, match=r"unknown embedder 'word2vec'.*wordllama"):
        make_embedder("word2vec")
    with pytest.raises(InvalidParameterError, match="non-empty"):
        make_embedder("")
    with pytest.raises(InvalidParameterError, match="takes no argument"):
        make_embedder("wordllama:big")
    with pytest.raises(InvalidParameterError, match="not str"):
        make_embedder("wordllama").embed(["fine", 3])


def test_the_registry_lists_every_embedder_with_its_modality():
    listed = available_embedders()
    assert {"wordllama", "sentence-transformers", "open-clip", "timm"} <= set(listed)
    assert listed["wordllama"].startswith("text:")
    assert listed["timm"].startswith("image:")


@pytest.mark.parametrize(
    ("kind", "word", "name", "parts", "auto"),
    [
        ("text", None, "tfidf+embedding:wordllama", ("embedding", "tfidf"), False),
        ("text", "auto", "auto:wordllama", ("embedding", "tfidf"), True),
        ("text", "tfidf", "tfidf", ("tfidf",), False),
        ("text", "embedding", "embedding:wordllama", ("embedding",), False),
        ("text", " tfidf+embedding ", "tfidf+embedding:wordllama", ("embedding", "tfidf"), False),
        ("image", "pixels", "pixels", ("pixels",), False),
        ("image", None, "embedding:randconv", ("embedding",), False),
        ("image", "embedding:timm:resnet18", "embedding:timm:resnet18", ("embedding",), False),
        ("tabular", None, "columns", ("columns",), False),
    ],
)
def test_the_features_word(kind, word, name, parts, auto):
    spec = parse_features(kind, word)
    assert (spec.name, spec.parts, spec.auto) == (name, parts, auto)


@pytest.mark.parametrize(
    ("kind", "word", "message"),
    [
        ("text", "pixels", "do not apply to text"),
        ("tabular", "embedding", "do not apply to tabular"),
        ("image", "pixels+embedding:randconv", "do not apply to image"),
        ("image", "auto", "do not apply to image"),
        ("text", "embedding:timm:resnet18", "embeds images, not texts"),
        ("image", "embedding:wordllama", "embeds texts, not images"),
        ("text", "embedding:glove", "unknown embedder"),
        ("text", "tfidf:wordllama", "do not apply"),
        ("text", "", "features must be one of"),
    ],
)
def test_a_wrong_features_word_is_refused_with_what_would_do(kind, word, message):
    with pytest.raises(InvalidParameterError, match=message):
        parse_features(kind, word)
