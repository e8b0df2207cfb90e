"""The embedders of the ``embed`` extra (:mod:`labelwise.features.torch_embedders`), on tiny
randomly initialised models that the tests build and save to temporary folders: nothing is
downloaded. Each model goes through the real loading code, by ``make_embedder("kind:path")``.

Without the extra's packages the model tests are skipped, except in CI (``CI=true``), which
installs the extra: there a missing package fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.features import embedders, image_models, image_prep, text_models, torch_embedders
from labelwise.features.embedders import make_embedder
from labelwise.features.torch_embedders import INSTALL, Placement
from needs import need_module

WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "mat", "red", "blue", "bird", "sings"]


def _require(module: str) -> Any:
    """``module``, or skip the test where it is not installed (a failure in CI)."""
    return need_module(module, f"install the embed extra: {INSTALL}")


def _unit(rows: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5))


def _check_rows(rows: np.ndarray, n: int, dim: int) -> None:
    assert rows.shape == (n, dim)
    assert rows.dtype == np.float32
    assert np.isfinite(rows).all()
    assert _unit(rows)


@pytest.fixture(autouse=True)
def _fresh_registry() -> Any:
    """Each test loads its models itself (the registry keeps them per name)."""
    embedders._load.cache_clear()
    yield
    embedders._load.cache_clear()


def _images(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------- errors that need no models


def test_empty_argument_is_refused() -> None:
    for spec in ("timm:", "open-clip:", "sentence-transformers:  "):
        with pytest.raises(InvalidParameterError, match="needs an argument"):
            make_embedder(spec)


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(InvalidParameterError, match="unknown torch embedder kind"):
        torch_embedders.make("keras", "x")


@pytest.mark.parametrize(
    ("spec", "missing"),
    [
        ("sentence-transformers:/m", "sentence_transformers"),
        ("timm:/m", "timm"),
        ("timm:/m", "torch"),
    ],
)
def test_missing_extra_names_the_install_command(
    spec: str, missing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if missing != "torch":
        _require("torch")
    monkeypatch.setitem(sys.modules, missing, None)  # importing it now raises ImportError
    with pytest.raises(InvalidParameterError, match=r"pip install 'labelwise\[embed\]'") as info:
        make_embedder(spec)
    assert missing in str(info.value)
    assert INSTALL in str(info.value)


# ------------------------------------------------------------------------ sentence-transformers


def _save_bert(folder: Path, *, sentence_transformers: bool = True) -> Path:
    """A 2-layer BERT with a hand-made WordPiece vocabulary, saved as sentence-transformers
    saves a model (or as a plain transformers model)."""
    torch = _require("torch")
    transformers = _require("transformers")
    folder.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", "##ing"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = transformers.BertTokenizerFast(
        vocab_file=str(folder / "vocab.txt"), do_lower_case=True
    )
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    transformers.BertModel(config).save_pretrained(folder)
    if sentence_transformers:
        (folder / "1_Pooling").mkdir()
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling",
            },
        ]
        (folder / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
        (folder / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": 32, "do_lower_case": False}), encoding="utf-8"
        )
        (folder / "1_Pooling" / "config.json").write_text(
            json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}),
            encoding="utf-8",
        )
    return folder


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _require("sentence_transformers")
    return _save_bert(tmp_path_factory.mktemp("st") / "tiny-bert")


def test_sentence_transformers_folder(bert_folder: Path) -> None:
    model = make_embedder(f"sentence-transformers:{bert_folder}")
    assert (model.modality, model.dim) == ("text", 32)
    assert model.name == f"sentence-transformers:{bert_folder}"
    texts = ["the cat sat on the mat", "a red bird sings", "the cat sat on the mat", ""]
    rows = model.embed(texts)
    _check_rows(rows, 4, 32)
    np.testing.assert_array_equal(rows[0], rows[2])
    assert float(rows[0] @ rows[1]) < 0.999  # two different texts, two different rows
    np.testing.assert_array_equal(model.embed(texts), rows)  # deterministic
    np.testing.assert_allclose(model.embed(texts[1:2])[0], rows[1], atol=1e-5)  # batch-free
    assert model.embed([]).shape == (0, 32)
    with pytest.raises(InvalidParameterError, match="not str"):
        model.embed(["fine", 3])
    embedders._load.cache_clear()  # loading again gives the same model
    again = make_embedder(f"sentence-transformers:{bert_folder}")
    np.testing.assert_allclose(again.embed(texts), rows, atol=1e-6)


def test_sentence_transformers_plain_transformers_folder(tmp_path: Path, bert_folder: Path) -> None:
    folder = _save_bert(tmp_path / "plain", sentence_transformers=False)
    rows = make_embedder(f"sentence-transformers:{folder}").embed(["the dog ran", "a tree"])
    _check_rows(rows, 2, 32)


def test_sentence_transformers_errors(tmp_path: Path, bert_folder: Path) -> None:
    with pytest.raises(InvalidParameterError, match="no such folder"):
        make_embedder(f"sentence-transformers:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidParameterError, match=r"holds no model; expected modules\.json"):
        make_embedder(f"sentence-transformers:{tmp_path / 'empty'}")
    with pytest.raises(InvalidParameterError, match="is a file"):
        make_embedder(f"sentence-transformers:{bert_folder / 'vocab.txt'}")
    with pytest.raises(InvalidParameterError, match="local Hugging Face cache"):
        make_embedder("sentence-transformers:labelwise-tests/no-such-model")


# ---------------------------------------------------------------------------------------- timm


@pytest.fixture(scope="module")
def timm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ViT with a 5-class head, saved as timm saves a model for the Hub."""
    torch = _require("torch")
    timm = _require("timm")
    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False, num_classes=5)
    folder = tmp_path_factory.mktemp("timm") / "tiny-vit"
    timm.models.save_for_hf(model, str(folder), safe_serialization=True)
    return folder


def test_timm_folder(timm_folder: Path) -> None:
    model = make_embedder(f"timm:{timm_folder}")
    assert (model.modality, model.dim) == ("image", 64)  # pooled features: the head left out
    images = _images(5, 40, 56)
    images[3] = images[1]
    rows = model.embed(images)
    _check_rows(rows, 5, 64)
    np.testing.assert_array_equal(rows[1], rows[3])
    assert float(rows[0] @ rows[1]) < 0.999
    np.testing.assert_array_equal(model.embed(images), rows)  # deterministic
    # floats in [0, 1] are the same pixels as uint8
    np.testing.assert_allclose(model.embed(images.astype(np.float32) / 255), rows, atol=1e-4)
    # grayscale (n, h, w) and (n, h, w, 1), RGBA, and a list of images of different sizes
    gray = images[..., 0]
    np.testing.assert_allclose(model.embed(gray), model.embed(gray[..., None]), atol=1e-6)
    np.testing.assert_allclose(
        model.embed(np.repeat(gray[..., None], 3, axis=-1)), model.embed(gray), atol=1e-5
    )
    rgba = np.concatenate([images, np.full((5, 40, 56, 1), 7, np.uint8)], axis=-1)
    np.testing.assert_allclose(model.embed(rgba), rows, atol=1e-6)
    mixed = [images[0], _images(1, 300, 200, seed=1)[0], images[2], gray[4]]
    listed = model.embed(mixed)
    _check_rows(listed, 4, 64)
    np.testing.assert_allclose(listed[[0, 2]], rows[[0, 2]], atol=1e-5)
    assert model.embed(np.zeros((0, 8, 8, 3), np.uint8)).shape == (0, 64)


def test_timm_bad_images(timm_folder: Path) -> None:
    model = make_embedder(f"timm:{timm_folder}")
    with pytest.raises(InvalidDataError, match="shape"):
        model.embed(np.zeros((2, 3), np.uint8))
    with pytest.raises(InvalidDataError, match="1, 3 or 4 channels"):
        model.embed(np.zeros((2, 8, 8, 2), np.uint8))
    with pytest.raises(InvalidDataError, match=r"\[0, 1\]"):
        model.embed(np.full((1, 8, 8, 3), 3.0, np.float32))


def test_timm_name_with_weights_file(tmp_path: Path) -> None:
    torch = _require("torch")
    timm = _require("timm")
    safetensors_torch = _require("safetensors.torch")
    torch.manual_seed(1)
    source = timm.create_model("test_resnet", pretrained=False, num_classes=0).eval()
    weights = tmp_path / "weights.safetensors"
    safetensors_torch.save_file(source.state_dict(), str(weights))
    model = make_embedder(f"timm:test_resnet:{weights}")
    images = _images(3, 64, 64)
    rows = model.embed(images)
    _check_rows(rows, 3, source.num_features)
    # the weights were loaded: the file's model, fed the same transform, gives the same rows
    x = image_prep.prepare(images, model._prep, model._place)
    with torch.inference_mode():
        expected = source(x).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(rows, expected, atol=1e-5)


def test_timm_name_from_the_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bare name loads the weights of its pretrained tag from the Hugging Face cache."""
    torch = _require("torch")
    timm = _require("timm")
    safetensors_torch = _require("safetensors.torch")
    hub_constants = _require("huggingface_hub.constants")
    repo = timm.models.get_pretrained_cfg("test_efficientnet").hf_hub_id  # timm/NAME.TAG
    commit = "0123456789abcdef0123456789abcdef01234567"
    cache = tmp_path / "hub"
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit, encoding="utf-8")
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    torch.manual_seed(2)
    source = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    safetensors_torch.save_file(source.state_dict(), str(snapshot / "model.safetensors"))
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    model = make_embedder("timm:test_efficientnet")
    rows = model.embed(_images(2, 50, 70))
    _check_rows(rows, 2, source.num_features)


def test_timm_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, timm_folder: Path) -> None:
    hub_constants = _require("huggingface_hub.constants")
    with pytest.raises(InvalidParameterError, match="no such folder"):
        make_embedder(f"timm:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidParameterError, match=r"holds no model; expected config\.json"):
        make_embedder(f"timm:{tmp_path / 'empty'}")
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "config.json").write_text('{"architecture": "test_vit"}')
    with pytest.raises(InvalidParameterError, match="holds no weights file"):
        make_embedder(f"timm:{tmp_path / 'config-only'}")
    (tmp_path / "not-timm").mkdir()
    (tmp_path / "not-timm" / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "not-timm" / "model.safetensors").write_bytes(b"")
    with pytest.raises(InvalidParameterError, match="names no 'architecture'"):
        make_embedder(f"timm:{tmp_path / 'not-timm'}")
    with pytest.raises(InvalidParameterError, match="unknown timm model 'no_such_net'"):
        make_embedder("timm:no_such_net")
    with pytest.raises(InvalidParameterError, match="no such weights file"):
        make_embedder(f"timm:test_vit:{tmp_path / 'missing.safetensors'}")
    # a known architecture whose weights are in no local cache: nothing is downloaded
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch"))
    with pytest.raises(InvalidParameterError, match="nothing is downloaded"):
        make_embedder("timm:test_vit")


# ----------------------------------------------------------------------------------- open-clip

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """A tiny OpenCLIP architecture, registered, with its weights in a file and a folder."""
    torch = _require("torch")
    open_clip = _require("open_clip")
    safetensors_torch = _require("safetensors.torch")
    root = tmp_path_factory.mktemp("clip")
    arch = "labelwise-tiny-clip"
    (root / f"{arch}.json").write_text(json.dumps(TINY_CLIP), encoding="utf-8")
    open_clip.add_model_config(root / f"{arch}.json")
    torch.manual_seed(3)
    model = open_clip.create_model(arch, pretrained=None)
    weights = root / "tiny.pt"
    torch.save(model.state_dict(), weights)
    folder = root / "folder"
    folder.mkdir()
    preprocess = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "resize_mode": "squash"}
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": preprocess}), encoding="utf-8"
    )
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    safetensors_torch.save_file(state, str(folder / "open_clip_model.safetensors"))
    return arch, weights, folder


def test_open_clip_arch_and_weights_file(clip_files: tuple[str, Path, Path]) -> None:
    arch, weights, _ = clip_files
    model = make_embedder(f"open-clip:{arch}:{weights}")
    assert (model.modality, model.dim) == ("image", 16)
    images = _images(4, 48, 40)
    images[2] = images[0]
    rows = model.embed(images)
    _check_rows(rows, 4, 16)
    np.testing.assert_array_equal(rows[0], rows[2])
    assert float(rows[0] @ rows[1]) < 0.999
    np.testing.assert_array_equal(model.embed(images), rows)


def test_open_clip_folder(clip_files: tuple[str, Path, Path]) -> None:
    arch, weights, folder = clip_files
    model = make_embedder(f"open-clip:{folder}")
    assert model._prep.resize == "squash"  # its own preprocess_cfg
    assert model._prep.mean == (0.5, 0.5, 0.5)
    rows = model.embed(_images(3, 32, 32))
    _check_rows(rows, 3, 16)
    # the same weights as the file, and its own normalisation: at the model's input size the
    # resizing does nothing, so the rows are the file's model on (x - 0.5) / 0.25
    torch = _require("torch")
    by_file = make_embedder(f"open-clip:{arch}:{weights}")
    x = _images(2, 32, 32, seed=5)
    pixels = torch.from_numpy(x.astype(np.float32) / 255).permute(0, 3, 1, 2)
    with torch.inference_mode():
        expected = by_file._forward((pixels - 0.5) / 0.25).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(model.embed(x), expected, atol=1e-5)


def test_open_clip_errors(tmp_path: Path, clip_files: tuple[str, Path, Path]) -> None:
    arch, weights, _ = clip_files
    with pytest.raises(InvalidParameterError, match="ARCH:WEIGHTS_FILE"):
        make_embedder(f"open-clip:{arch}")
    with pytest.raises(InvalidParameterError, match="unknown OpenCLIP architecture"):
        make_embedder(f"open-clip:No-Such-Arch:{weights}")
    with pytest.raises(InvalidParameterError, match="no such weights file"):
        make_embedder(f"open-clip:{arch}:{tmp_path / 'missing.bin'}")
    with pytest.raises(InvalidParameterError, match="no such folder"):
        make_embedder(f"open-clip:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidParameterError, match="open_clip_config.json"):
        make_embedder(f"open-clip:{tmp_path / 'empty'}")


# ----------------------------------------------------------------- half precision (GPU's path)


def test_half_precision_path_and_float32_fallback(
    timm_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU's code path (float16 autocast, rows that overflow computed again in float32),
    run on the CPU, whose autocast also knows float16."""
    torch = _require("torch")
    spec = f"timm:{timm_folder}"
    images = _images(6, 40, 40)
    exact = make_embedder(spec).embed(images)
    embedders._load.cache_clear()
    monkeypatch.setattr(image_models, "placement", lambda: Placement("cpu", True, 4, 4))
    model = make_embedder(spec)
    half = model.embed(images)
    _check_rows(half, 6, 64)
    assert float(np.min(np.sum(half * exact, axis=1))) > 0.99

    # a forward pass that overflows float16 (65,504) but not float32
    layer = torch.nn.Linear(3 * 160 * 160, 4, bias=False)
    torch.nn.init.constant_(layer.weight, 10.0)
    monkeypatch.setattr(model, "_forward", lambda x: layer(x.flatten(1).abs()))
    model.dim = 4
    rows = model.embed(images)
    _check_rows(rows, 6, 4)
    np.testing.assert_allclose(rows, 0.5, atol=1e-6)
    # NaN even in float32: an error, not NaN rows
    monkeypatch.setattr(model, "_forward", lambda x: torch.full((len(x), 4), float("nan")))
    with pytest.raises(InvalidDataError, match="non-finite values for 6 item"):
        model.embed(images)


def test_half_precision_text(bert_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = f"sentence-transformers:{bert_folder}"
    texts = ["the cat sat on the mat", "a red bird sings", "dog"]
    exact = make_embedder(spec).embed(texts)
    embedders._load.cache_clear()
    monkeypatch.setattr(text_models, "placement", lambda: Placement("cpu", True, 2, 2))
    half = make_embedder(spec).embed(texts)
    _check_rows(half, 3, 32)
    assert float(np.min(np.sum(half * exact, axis=1))) > 0.99
