"""MobileSAM ("vit_t"): weights in the published layout load, segment like the official package, and work in the CLI and page."""

from __future__ import annotations

import hashlib
import io
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything.modeling import Sam
from streamlit.testing.v1 import AppTest

from samdash.backends import available_backends, make_encoder
from samdash.cli import main
from samdash.config import Settings
from samdash.engine import EmbeddingCache
from samdash.sam_engine import SamEngine
from samdash.errors import CheckpointError
from samdash.checkpoints import CATALOGUE, checkpoint_url
from samdash.models import MOBILE_SAM_PACKAGES, build_model, load_model
from tests.agreement import assert_same_candidates
from tests.page_driver import APP, RECT, draw, settle

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the package's use of deprecated timm paths
    mobile_sam = pytest.importorskip("mobile_sam", reason=f"MobileSAM is optional: pip install {MOBILE_SAM_PACKAGES}")


@pytest.fixture(scope="module")
def official() -> torch.nn.Module:
    """MobileSAM as its own package builds it, with random attention biases (fresh ones are zero)."""
    torch.manual_seed(5)
    model = mobile_sam.sam_model_registry["vit_t"]()
    with torch.no_grad():
        for module in model.modules():
            biases = getattr(module, "attention_biases", None)
            if isinstance(biases, torch.nn.Parameter):
                biases.normal_(std=0.5)
    return model.eval()  # TinyViT caches its bias tables on eval()


@pytest.fixture(scope="module")
def checkpoint(official, tmp_path_factory) -> Path:
    """A file laid out like the published mobile_sam.pt: the model's bare state dict."""
    path = tmp_path_factory.mktemp("mobile") / CATALOGUE["vit_t"].filename
    torch.save(official.state_dict(), path)
    return path


def test_catalogue_offers_mobile_sam_from_its_publisher():
    spec = CATALOGUE["vit_t"]
    assert spec.sha256 == "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f"
    assert checkpoint_url(spec, Settings()) == (
        "https://raw.githubusercontent.com/ChaoningZhang/MobileSAM/"
        "f706ad9c4eb7f219c00d9050e46328518ffb65d2/weights/mobile_sam.pt"
    )
    assert checkpoint_url(spec, Settings(download_base="http://mirror.local/sam")) == "http://mirror.local/sam/mobile_sam.pt"
    assert checkpoint_url(CATALOGUE["vit_b"], Settings()).startswith("https://dl.fbaipublicfiles.com/segment_anything/")


def test_weights_in_the_published_layout_load_and_are_recognised(official, checkpoint):
    loaded = load_model(None, Settings(checkpoint=checkpoint), "cpu")
    assert loaded.model_type == "vit_t" and isinstance(loaded.model, Sam)
    ours, theirs = loaded.model.state_dict(), official.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in theirs)


def test_sam_weights_are_not_taken_for_mobile_sam(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="not fit the vit_t architecture"):
        load_model("vit_t", Settings(checkpoint=tiny_checkpoint), "cpu")


@pytest.mark.parametrize("backend", available_backends())
def test_masks_match_the_official_predictor(official, checkpoint, scene, backend):
    model = load_model("vit_t", Settings(checkpoint=checkpoint), "cpu").model
    engine = SamEngine(model, "MobileSAM", EmbeddingCache(64 << 20), encoder=make_encoder(model, backend))
    assert_same_candidates(engine, mobile_sam.SamPredictor(official), scene)


def test_without_the_package_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mobile_sam", None)  # makes ``import mobile_sam`` fail
    with pytest.raises(CheckpointError, match=f"pip install {MOBILE_SAM_PACKAGES}"):
        build_model("vit_t", None, "cpu")


def test_cli_segments_with_mobile_sam(checkpoint, scene, tmp_path):
    image = tmp_path / "scene.png"
    Image.fromarray(scene).save(image)
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["segment", str(image), "--checkpoint", str(checkpoint), "--model", "vit_t", "--box", "120,100,320,300",
         "--out", str(tmp_path / "out"), "--format", "png"],
        out=out, err=err,
    )
    assert code == 0, err.getvalue()
    assert "1 of 1 images segmented in" in out.getvalue() and "with MobileSAM;" in out.getvalue()
    assert any((tmp_path / "out").rglob("*.png"))


def test_page_uses_mobile_sam_from_the_model_folder(checkpoint, monkeypatch, tmp_path):
    # The random weights stand in for the official file: the catalogue's size and SHA-256 are set to theirs.
    data = checkpoint.read_bytes()
    spec = replace(CATALOGUE["vit_t"], size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(CATALOGUE, "vit_t", spec)
    (tmp_path / checkpoint.name).symlink_to(checkpoint)
    for name in ("SAMDASH_CHECKPOINT", "SAMDASH_DOWNLOAD_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SAMDASH_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("SAMDASH_MODEL_TYPE", "vit_t")
    monkeypatch.setenv("SAMDASH_DEVICE", "cpu")
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    settle(at)
    assert at.selectbox(key="model_choice").value == "vit_t"
    assert not at.warning  # no fallback banner: MobileSAM is in use
    assert any("with MobileSAM" in caption.value for caption in at.caption)
    draw(at, RECT)
    (segment,) = at.session_state["samdash"].workspace.segments
    assert segment.area > 0 and not np.isnan(segment.score)
