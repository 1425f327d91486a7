"""Checkpoint catalogue, safe loading, architecture checks and device choice, with tiny SAMs."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from samdash import checkpoints, download, models
from samdash.config import Settings
from samdash.errors import CheckpointError, SamdashError
from samdash.checkpoints import CATALOGUE, locate_checkpoint
from samdash.models import (
    ARCHITECTURES,
    PATCH_EMBED,
    Architecture,
    build_model,
    infer_model_type,
    load_model,
    load_state_dict,
    select_device,
)
from tests.tiny_sam import build_tiny_sam


@pytest.fixture
def tiny_arch(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register the tiny SAM (image encoder 32 wide) as a model type for this test."""
    monkeypatch.setitem(ARCHITECTURES, "tiny", Architecture(build_tiny_sam, (PATCH_EMBED, 32)))
    return "tiny"


@pytest.fixture(scope="module")
def tiny_weights() -> dict[str, torch.Tensor]:
    return build_tiny_sam(seed=3).state_dict()


@pytest.fixture
def tiny_file(tmp_path: Path, tiny_weights) -> Path:
    path = tmp_path / "tiny_sam.pth"
    torch.save(tiny_weights, path)
    return path


def _fake_weights(width: int) -> dict[str, torch.Tensor]:
    """Just enough of a SAM state dict to be recognised, with an encoder ``width`` wide."""
    return {PATCH_EMBED: torch.zeros(width, 3, 16, 16), "mask_decoder.iou_token.weight": torch.zeros(1, 256)}


def test_every_downloadable_model_is_recognised_from_its_weights():
    # A catalogue entry the app could not build, or whose weights it took for another model, would download for nothing.
    for key, spec in CATALOGUE.items():
        name, width = ARCHITECTURES[key].signature
        weights = {name: torch.zeros(width, 3, 3, 3), "mask_decoder.iou_token.weight": torch.zeros(1, 256)}
        assert spec.model_type == key and infer_model_type(weights) == key


@pytest.mark.parametrize("base", ["https://example.org/sam", "https://example.org/sam/"])
def test_checkpoint_url_joins_with_or_without_slash(base):
    assert checkpoints.checkpoint_url(CATALOGUE["vit_l"], Settings(download_base=base)) == (
        "https://example.org/sam/sam_vit_l_0b3195.pth"
    )


@pytest.mark.parametrize(("width", "expected"), [(768, "vit_b"), (1024, "vit_l"), (1280, "vit_h")])
def test_infer_model_type_from_encoder_width(width, expected):
    assert infer_model_type(_fake_weights(width)) == expected


def test_infer_model_type_rejects_unknown_shapes():
    with pytest.raises(CheckpointError, match="32 wide"):
        infer_model_type(_fake_weights(32))
    with pytest.raises(CheckpointError, match="no known encoder"):
        infer_model_type({"mask_decoder.x": torch.zeros(1)})


def test_round_trip_through_a_file(tiny_arch, tiny_file, tiny_weights):
    state = load_state_dict(tiny_file)
    assert infer_model_type(state) == tiny_arch
    model = build_model(tiny_arch, state, "cpu")
    assert not model.training
    reference = build_tiny_sam(seed=3).eval()
    image = torch.rand(1, 3, 1024, 1024)
    with torch.inference_mode():
        assert torch.equal(model.image_encoder(image), reference.image_encoder(image))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in tiny_weights.items())


def test_load_model_infers_type_of_a_custom_checkpoint(tiny_arch, tiny_file):
    loaded = load_model(None, Settings(checkpoint=tiny_file), "cpu")
    assert loaded.model_type == tiny_arch and loaded.checkpoint == tiny_file
    assert next(loaded.model.parameters()).device.type == "cpu"


@pytest.mark.parametrize("wrap", ["model", "state_dict", "module."])
def test_wrapped_weights_load(tiny_arch, tmp_path, tiny_weights, wrap):
    path = tmp_path / "finetuned.pth"
    if wrap == "module.":
        torch.save({f"module.{k}": v for k, v in tiny_weights.items()}, path)
    else:
        torch.save({wrap: tiny_weights, "epoch": 3}, path)
    state = load_state_dict(path)
    assert state.keys() == tiny_weights.keys()
    model = build_model(tiny_arch, state, "cpu")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in tiny_weights.items())


def test_truncated_file(tiny_file):
    data = tiny_file.read_bytes()
    tiny_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"^Checkpoint {tiny_file} is not a readable PyTorch file \(truncated"):
        load_state_dict(tiny_file)


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint\n", b"\x89PNG\r\n\x1a\n" + bytes(100)])
def test_not_a_torch_file(tmp_path, content):
    path = tmp_path / "other.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=rf"^Checkpoint {path} is not a readable PyTorch file"):
        load_state_dict(path)


@pytest.mark.parametrize("payload", [{"weight": torch.zeros(3), "bias": torch.zeros(1)}, [torch.zeros(2)]])
def test_torch_file_that_is_not_sam(tmp_path, payload):
    path = tmp_path / "resnet.pth"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=rf"^Checkpoint {path} is a PyTorch file but not a Segment Anything"):
        load_state_dict(path)


def test_pickled_objects_are_refused(tmp_path, tiny_weights):
    path = tmp_path / "training_run.pth"
    torch.save({"model": tiny_weights, "args": argparse.Namespace(lr=1e-4)}, path)
    expected = rf"^Checkpoint {path} holds Python objects besides tensors \(argparse\.Namespace\)"
    with pytest.raises(CheckpointError, match=expected):
        load_state_dict(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pth does not exist"):
        load_state_dict(tmp_path / "nope.pth")


def test_vit_b_weights_asked_for_as_vit_l(tmp_path):
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(_fake_weights(768), path)
    with pytest.raises(CheckpointError, match=rf"^Checkpoint {path} is a vit_b checkpoint, not vit_l\.$"):
        load_model("vit_l", Settings(checkpoint=path), "cpu")
    with pytest.raises(CheckpointError, match=rf"^Checkpoint {path} is a vit_b checkpoint, not vit_l\.$"):
        load_model(None, Settings(checkpoint=path, model_type="vit_l"), "cpu")


def test_weights_of_an_unknown_width_as_vit_b(tmp_path, tiny_file):
    expected = rf"^Checkpoint {tiny_file} does not fit the vit_b architecture: .*other shapes"
    with pytest.raises(CheckpointError, match=expected):
        load_model("vit_b", Settings(checkpoint=tiny_file), "cpu")


def test_unrecognisable_encoder_without_type_names_the_file(tmp_path, tiny_weights):
    path = tmp_path / "odd.pth"
    torch.save({k: v for k, v in tiny_weights.items() if "rel_pos" not in k}, path)
    with pytest.raises(CheckpointError, match=rf"^Checkpoint {path}: .*32 wide"):
        load_model(None, Settings(checkpoint=path), "cpu")


def test_missing_weights_are_reported(tiny_arch, tiny_weights):
    partial = dict(tiny_weights)
    del partial["mask_decoder.iou_token.weight"]
    with pytest.raises(CheckpointError, match=r"1 weights missing \(e\.g\. mask_decoder\.iou_token\.weight\)"):
        build_model(tiny_arch, partial, "cpu")


def test_unknown_model_type():
    with pytest.raises(CheckpointError, match="Unknown model type 'vit_z'"):
        build_model("vit_z", None, "cpu")
    with pytest.raises(CheckpointError, match="known types: vit_b, vit_l, vit_h"):
        locate_checkpoint("vit_z", Settings())


def test_locate_prefers_explicit_path(tmp_path, tiny_file):
    (tmp_path / CATALOGUE["vit_b"].filename).write_bytes(b"x")
    assert locate_checkpoint("vit_b", Settings(checkpoint=tiny_file, model_dir=tmp_path)) == tiny_file
    assert locate_checkpoint("vit_b", Settings(model_dir=tmp_path)) == tmp_path / "sam_vit_b_01ec64.pth"
    assert locate_checkpoint("vit_l", Settings(model_dir=tmp_path)) is None


def test_locate_explicit_path_must_exist(tmp_path):
    missing = tmp_path / "medsam_vit_b.pth"
    with pytest.raises(CheckpointError, match=f"{missing} does not exist"):
        locate_checkpoint("vit_b", Settings(checkpoint=missing))
    part = tmp_path / "sam_vit_b_01ec64.pth.part"
    part.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unfinished download"):
        locate_checkpoint("vit_b", Settings(checkpoint=part))


def test_load_model_without_a_file_says_to_download(tmp_path):
    with pytest.raises(CheckpointError, match=f"sam_vit_h_4b8939.pth is not in {tmp_path}; download it first"):
        load_model("vit_h", Settings(model_dir=tmp_path), "cpu")


def test_checkpoint_state(tmp_path):
    settings = Settings(model_dir=tmp_path)
    target = tmp_path / CATALOGUE["vit_b"].filename
    assert checkpoints.checkpoint_state("vit_b", settings) == "missing"
    target.with_name(target.name + ".part").write_bytes(b"x")
    assert checkpoints.checkpoint_state("vit_b", settings) == "partial"
    target.write_bytes(b"x")
    assert checkpoints.checkpoint_state("vit_b", settings) == "present"


def test_select_device():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device(" CPU ") == torch.device("cpu")
    if not torch.cuda.is_available() and not models._mps_available():
        assert select_device("auto") == torch.device("cpu")
    with pytest.raises(SamdashError, match="Unknown device 'tpu'"):
        select_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_unavailable_cuda_is_a_clear_error():
    with pytest.raises(SamdashError, match="'cuda' was asked for, but PyTorch sees no CUDA GPU"):
        select_device("cuda")


def test_a_custom_vit_of_any_size_is_read_off_its_tensors(tmp_path, tiny_sam, scene):
    from samdash.engine import EmbeddingCache
    from samdash.sam_engine import SamEngine
    from samdash.models import custom_vit
    from samdash.prompts import box_prompt

    path = tmp_path / "finetuned.pth"
    torch.save({"model": tiny_sam.state_dict()}, path)
    architecture = custom_vit(tiny_sam.state_dict())
    assert architecture is not None
    loaded = load_model(None, Settings(checkpoint=path), "cpu")
    assert loaded.model_type == "custom ViT (32 wide, 2 blocks)"
    encoder = loaded.model.image_encoder
    assert len(encoder.blocks) == 2 and encoder.blocks[0].attn.num_heads == 2
    assert encoder.blocks[1].window_size == 0 and encoder.blocks[0].window_size == 14
    prompt = box_prompt((100, 100, 300, 300), 640, 480)
    ours = SamEngine(loaded.model, "loaded", EmbeddingCache(1 << 26))
    reference = SamEngine(tiny_sam, "reference", EmbeddingCache(1 << 26))
    a = ours.predict(ours.embed(scene, "s"), prompt)
    b = reference.predict(reference.embed(scene, "s"), prompt)
    np.testing.assert_array_equal(a.masks, b.masks)


@pytest.fixture
def official(tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny checkpoint in a models folder under vit_b's official name, the catalogue's size and SHA-256 set to its own."""
    data = tiny_checkpoint.read_bytes()
    spec = replace(CATALOGUE["vit_b"], size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(CATALOGUE, "vit_b", spec)
    path = tmp_path / spec.filename
    path.write_bytes(data)
    return path


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files ``checkpoints`` hashes, in order."""
    calls: list[Path] = []

    def counting(path: Path) -> tuple[hashlib._Hash, int]:
        calls.append(path)
        return download.hash_file(path)

    monkeypatch.setattr(checkpoints, "hash_file", counting)
    return calls


def _rewrite(path: Path, data: bytes) -> None:
    """New contents, with an mtime surely different from the old one (some file systems tick coarsely)."""
    old = path.stat().st_mtime_ns
    path.write_bytes(data)
    os.utime(path, ns=(old + 10**9, old + 10**9))


FIX = re.escape("Delete it and download it again: python -m samdash download --model vit_b, or the Download button")


def test_an_official_checkpoint_is_hashed_once_and_then_remembered(official, hashes):
    settings = Settings(model_dir=official.parent)
    loaded = load_model(None, settings, "cpu")
    assert loaded.checkpoint == official and hashes == [official]
    stat = official.stat()
    record = json.loads((official.parent / checkpoints.HASH_RECORD).read_text())
    assert record == {official.name: {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": CATALOGUE["vit_b"].sha256}}
    load_model(None, settings, "cpu")
    assert hashes == [official]  # unchanged: not read again
    _rewrite(official, official.read_bytes())
    load_model(None, settings, "cpu")
    assert hashes == [official, official]  # touched: hashed again


def test_a_truncated_official_checkpoint_is_refused_by_its_size(official, hashes):
    size = official.stat().st_size
    _rewrite(official, official.read_bytes()[:-1000])
    expected = (
        rf"^Checkpoint {re.escape(str(official))} is {size - 1000:,} bytes, but the official sam_vit_b_01ec64\.pth "
        rf"is {size:,} \(an incomplete or damaged copy\)\. {FIX}"
    )
    with pytest.raises(CheckpointError, match=expected):
        load_model(None, Settings(model_dir=official.parent), "cpu")
    assert hashes == []  # the size alone tells


def test_an_official_checkpoint_with_one_flipped_byte_is_refused_by_its_hash(official, hashes):
    settings = Settings(model_dir=official.parent)
    load_model(None, settings, "cpu")
    good = official.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0x01
    _rewrite(official, bytes(damaged))
    load_state_dict(official)  # still a readable checkpoint, with one wrong weight: only the hash tells
    expected = (
        rf"^Checkpoint {re.escape(str(official))} is damaged: its SHA-256 is {hashlib.sha256(damaged).hexdigest()}, "
        rf"but the official sam_vit_b_01ec64\.pth's is {CATALOGUE['vit_b'].sha256}\. {FIX}"
    )
    for _ in range(2):
        with pytest.raises(CheckpointError, match=expected):
            load_model(None, settings, "cpu")
    assert hashes == [official, official]  # the damaged file's hash is remembered too
    _rewrite(official, good)
    load_model(None, settings, "cpu")
    assert hashes == [official] * 3


def test_an_unreadable_hash_record_only_means_hashing_again(official, hashes):
    (official.parent / checkpoints.HASH_RECORD).write_text("{not json")
    load_model(None, Settings(model_dir=official.parent), "cpu")
    assert hashes == [official]
    assert json.loads((official.parent / checkpoints.HASH_RECORD).read_text())[official.name]["sha256"] == CATALOGUE["vit_b"].sha256


def test_an_explicit_checkpoint_is_not_checked_against_the_catalogue(tmp_path, tiny_checkpoint, hashes):
    # A fine-tuned file may well carry an official name; the real catalogue's size and hash do not fit it.
    path = tmp_path / CATALOGUE["vit_b"].filename
    path.write_bytes(tiny_checkpoint.read_bytes())
    loaded = load_model(None, Settings(checkpoint=path, model_dir=tmp_path), "cpu")
    assert loaded.checkpoint == path and hashes == []
    assert not (tmp_path / checkpoints.HASH_RECORD).exists()
