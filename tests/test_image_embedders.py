"""The ``randconv`` image embedder: random convolutional features, no weights, no fit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.features.embedders import (
    Embedder,
    available_embedders,
    embedder_modality,
    make_embedder,
)
from labelwise.features.image_embedders import RandomConvEmbedder, to_grey

DIM = 1024


def _images(n: int, h: int = 28, w: int = 28, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w), dtype=np.uint8)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


@pytest.fixture(scope="module")
def embedder() -> RandomConvEmbedder:
    return RandomConvEmbedder()


def test_registered_as_an_image_embedder() -> None:
    model = make_embedder("randconv")
    assert isinstance(model, RandomConvEmbedder)
    assert isinstance(model, Embedder)
    assert (model.name, model.dim, model.modality) == ("randconv", DIM, "image")
    assert embedder_modality("randconv") == "image"
    assert available_embedders()["randconv"].startswith("image: ")
    with pytest.raises(InvalidParameterError, match="takes no argument"):
        make_embedder("randconv:64")


def test_rows_are_raw_float32_features_the_model_standardises(
    embedder: RandomConvEmbedder,
) -> None:
    from labelwise.features.scaling import fit_to_pool, pool_statistics
    from labelwise.models.registry import make_model

    rows = embedder.embed(_images(7))
    assert rows.shape == (7, DIM)
    assert rows.dtype == np.float32
    assert (rows >= 0).all()  # rectified features
    norms = np.linalg.norm(rows, axis=1)
    assert (norms > 0).all() and not np.allclose(norms, 1.0, atol=1e-3)
    # no unit rows: the model standardises their columns with the pool's statistics
    assert not pool_statistics(rows).normalized
    assert fit_to_pool(make_model("logreg"), rows)[0].bound


def test_deterministic_and_independent_of_the_batch(embedder: RandomConvEmbedder) -> None:
    images = _images(9, seed=3)
    first = embedder.embed(images)
    assert np.array_equal(first, embedder.embed(images))
    assert np.array_equal(first, RandomConvEmbedder().embed(images))  # filters from the seed
    one_by_one = np.vstack([embedder.embed(images[i : i + 1]) for i in range(len(images))])
    np.testing.assert_allclose(one_by_one, first, atol=1e-6)
    other = RandomConvEmbedder(seed=1).embed(images)
    assert not np.allclose(other, first)


def test_uint8_and_float_agree(embedder: RandomConvEmbedder) -> None:
    images = _images(4, seed=5)
    np.testing.assert_allclose(embedder.embed(images), embedder.embed(images / 255.0), atol=1e-5)


def test_invariant_to_brightness_and_contrast(embedder: RandomConvEmbedder) -> None:
    images = _images(4, seed=6) / 255.0
    dimmer = 0.2 + 0.5 * images
    assert _cosine(embedder.embed(images), embedder.embed(dimmer)).min() > 0.999


def test_colour_images(embedder: RandomConvEmbedder) -> None:
    grey = _images(3, seed=7)
    expected = embedder.embed(grey)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    rgba = np.concatenate([rgb, np.full((3, 28, 28, 1), 255, np.uint8)], axis=-1)
    grey_alpha = np.concatenate([grey[..., None], np.zeros((3, 28, 28, 1), np.uint8)], axis=-1)
    for batch in (grey[..., None], grey_alpha, rgb, rgba, rgb / 255.0):
        np.testing.assert_allclose(embedder.embed(batch), expected, atol=1e-4)
    colour = np.random.default_rng(8).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    rows = embedder.embed(colour)
    assert rows.shape == (2, DIM)
    assert (np.linalg.norm(rows, axis=1) > 0).all()


@pytest.mark.parametrize(("h", "w"), [(28, 28), (32, 32), (64, 48), (9, 200), (8, 8), (1, 1)])
def test_any_size(embedder: RandomConvEmbedder, h: int, w: int) -> None:
    rows = embedder.embed(_images(2, h, w, seed=h * w))
    assert rows.shape == (2, DIM)
    norms = np.linalg.norm(rows, axis=1)
    assert (norms > 0).all() if h * w > 1 else not norms.any()  # one pixel is flat


def test_an_enlarged_image_embeds_like_the_original(embedder: RandomConvEmbedder) -> None:
    # Smooth images (blurred noise), so that resampling barely changes them.
    noise = np.random.default_rng(9).random((3, 7, 7))
    small = np.kron(noise, np.ones((4, 4)))  # 28 x 28
    large = np.kron(noise, np.ones((8, 8)))  # 56 x 56, the same picture
    similarity = _cosine(embedder.embed(small), embedder.embed(large))
    assert similarity.min() > 0.9


def test_flat_images_and_empty_batches(embedder: RandomConvEmbedder) -> None:
    flat = np.stack([np.zeros((28, 28)), np.full((28, 28), 0.3), np.ones((28, 28))])
    assert not embedder.embed(flat).any()
    assert embedder.embed(np.zeros((0, 28, 28), np.uint8)).shape == (0, DIM)


def _bars(n: int, vertical: bool, rng: np.random.Generator) -> np.ndarray:
    """Slightly noisy images holding one bar at a random place: vertical or horizontal."""
    images = rng.normal(0.5, 0.05, size=(n, 28, 28))
    for image, at in zip(images, rng.integers(4, 22, size=n), strict=True):
        if vertical:
            image[4:24, at : at + 2] += 0.35
        else:
            image[at : at + 2, 4:24] += 0.35
    return np.clip(images, 0.0, 1.0)


def test_separates_two_simple_classes(embedder: RandomConvEmbedder) -> None:
    # Where the bar is varies, so no pixel tells the classes apart; the orientation does.
    rng = np.random.default_rng(10)
    train = np.concatenate([_bars(20, True, rng), _bars(20, False, rng)])
    test = np.concatenate([_bars(100, True, rng), _bars(100, False, rng)])
    y_train, y_test = np.repeat([0, 1], 20), np.repeat([0, 1], 100)
    model = LogisticRegression(C=100.0, max_iter=2000)
    embedded = model.fit(embedder.embed(train), y_train).score(embedder.embed(test), y_test)
    pixels = model.fit(train.reshape(40, -1), y_train).score(test.reshape(200, -1), y_test)
    assert embedded >= 0.9  # chance is 0.5
    assert embedded >= pixels + 0.1


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (
            np.zeros((28, 28), np.uint8),
            r"shape \(n, h, w\) or \(n, h, w, c\), got shape \(28, 28\)",
        ),
        (np.zeros((2, 8, 8, 3, 1), np.uint8), "got shape"),
        (np.zeros((2, 0, 8), np.uint8), "at least 1 x 1 pixels"),
        (np.zeros((2, 8, 8), np.int64), "uint8 or floats in \\[0, 1\\], got dtype int64"),
        (np.zeros((2, 8, 8), bool), "got dtype bool"),
        (np.full((2, 8, 8), "a"), "got dtype <U1"),
        (np.full((2, 8, 8), 2.0), "values in \\[0, 1\\], got values from 2 to 2"),
        (np.full((2, 8, 8), -0.5), "got values from -0.5"),
        (np.full((2, 8, 8), np.nan), "NaN or infinite"),
        (np.zeros((2, 8, 8, 5), np.uint8), "5 channels"),
        ([np.zeros((8, 8)), np.zeros((9, 9))], "one array"),
    ],
)
def test_bad_input_is_refused_by_name(
    embedder: RandomConvEmbedder, batch: object, message: str
) -> None:
    with pytest.raises(InvalidDataError, match=message):
        embedder.embed(batch)


def test_bad_parameters() -> None:
    with pytest.raises(InvalidParameterError, match="n_filters"):
        RandomConvEmbedder(n_filters=0)
    with pytest.raises(InvalidParameterError, match="grid"):
        RandomConvEmbedder(side=6, kernel=5, grid=4)


def test_to_grey_luminance() -> None:
    red = np.zeros((1, 2, 2, 3), np.uint8)
    red[..., 0] = 255
    np.testing.assert_allclose(to_grey(red), np.full((1, 2, 2), 0.299), rtol=1e-6)
