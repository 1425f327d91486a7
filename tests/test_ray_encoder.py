"""The image encoder on Ray Serve: a local Ray instance on 127.0.0.1, the tiny SAM, the page's engine on top."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from samdash.config import Settings
from samdash.engine import EmbeddingCache
from samdash.errors import EncoderError
from samdash.prompts import box_prompt
from samdash.segmenter import sam_engine
from samdash.store import Store

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

from samdash.ray_encoder import APP_NAME, DEPLOYMENT_NAME, serve_encoder  # noqa: E402


@pytest.fixture(scope="module")
def cluster(tiny_checkpoint):
    """Ray on this machine's loopback, with no HTTP proxy (handles only), and the encoder deployed with 2 replicas."""
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    serve.start(proxy_location="Disabled")
    serve_encoder(None, tiny_checkpoint, "cpu", 2, 0.5, 0.0)
    yield tiny_checkpoint
    serve.shutdown()
    ray.shutdown()


def _settings(tmp_path, checkpoint, **changes) -> Settings:
    return replace(Settings(checkpoint=checkpoint, device="cpu", data_dir=tmp_path / "data", model_dir=tmp_path), **changes)


def _engines(tmp_path, checkpoint, **remote):
    local = sam_engine(None, _settings(tmp_path / "local", checkpoint), EmbeddingCache(64 << 20))
    far = sam_engine(None, _settings(tmp_path / "far", checkpoint, encoder="ray", **remote), EmbeddingCache(64 << 20))
    return local, far


def test_embeddings_from_the_deployment_equal_local_ones_and_so_do_the_masks(cluster, tmp_path, scene):
    local, far = _engines(tmp_path, cluster)
    assert far.remote is not None and "samdash-encoder" in far.remote.where
    mine, theirs = local.embed(scene, "scene"), far.embed(scene, "scene")
    assert far.encoder_calls == 0 and local.encoder_calls == 1  # the far engine never encoded here
    assert theirs.input_size == mine.input_size and theirs.original_size == mine.original_size
    assert float((theirs.features - mine.features).abs().max()) == 0.0
    prompt = box_prompt((140, 120, 300, 280), 640, 480)
    for index in range(3):
        np.testing.assert_array_equal(far.predict(theirs, prompt).mask(index), local.predict(mine, prompt).mask(index))
    # One remote encode per image per process: the second ask is the cache's.
    assert far.embed(scene, "scene") is theirs


def _replicas() -> list:
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["namespace"] == "serve" and a["name"].startswith(f"SERVE_REPLICA::{APP_NAME}#{DEPLOYMENT_NAME}")]
    return [ray.get_actor(name, namespace="serve") for name in names]


def test_a_request_whose_replicas_die_under_it_is_sent_again_and_answered(cluster, tmp_path, scene):
    """A SAM whose encoder takes about a second here, so that the request is surely in the replica when it dies."""
    import torch
    from segment_anything.build_sam import _build_sam

    torch.manual_seed(1)
    slow = tmp_path / "slow.pth"
    torch.save(_build_sam(encoder_embed_dim=256, encoder_depth=8, encoder_num_heads=8,
                          encoder_global_attn_indexes=[7]).state_dict(), slow)
    serve_encoder(None, slow, "cpu", 2, 0.5, 0.0)
    try:
        far = sam_engine(None, _settings(tmp_path, slow, encoder="ray"), EmbeddingCache(64 << 20))
        resized = far._transform.apply_image(scene)
        answers: list[object] = []
        sender = threading.Thread(target=lambda: answers.append(far.remote.encode(resized)))
        sender.start()
        time.sleep(0.4)
        assert sender.is_alive(), "the encode ended before the replicas could be killed"
        for replica in _replicas():
            ray.kill(replica, no_restart=False)
        sender.join(timeout=180)
        features, _ = answers[0]
        assert far.remote.retries == 1 and features.shape[:2] == (1, 256)
    finally:
        serve_encoder(None, cluster, "cpu", 2, 0.5, 0.0)


def test_bad_requests_get_a_clear_error_and_the_replica_stays_up(cluster, tmp_path, scene):
    _, far = _engines(tmp_path, cluster)
    with pytest.raises(EncoderError, match="refused the image: the image is 10×10 px: send it resized"):
        far.remote.encode(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(EncoderError, match="refused the image: not an image"):
        far.remote.encode(np.zeros((64, 64), np.float32))
    assert far.embed(scene, "after") is not None and far.remote_problem is None


def test_a_deleted_deployment_is_a_clear_message_and_with_fallback_the_image_is_encoded_here(cluster, tmp_path, scene):
    _, strict = _engines(tmp_path / "strict", cluster)
    _, lenient = _engines(tmp_path / "lenient", cluster, encoder_fallback="local")
    serve.delete(APP_NAME)
    try:
        with pytest.raises(EncoderError, match="not running: no samdash-encoder application"):
            strict.embed(scene, "scene")
        embedding = lenient.embed(scene, "scene")
        assert lenient.encoder_calls == 1 and embedding.features is not None
        assert "not running" in lenient.remote_problem and "encoded here" in lenient.remote_problem
        # A page started while it is gone: said once, and encoded here when allowed.
        with pytest.raises(EncoderError, match="cannot be reached"):
            sam_engine(None, _settings(tmp_path / "new", cluster, encoder="ray", encoder_timeout_s=5), EmbeddingCache(1 << 20))
        started = sam_engine(None, _settings(tmp_path / "new2", cluster, encoder="ray", encoder_fallback="local",
                                             encoder_timeout_s=5), EmbeddingCache(1 << 20))
        assert started.remote is None and "cannot be reached" in started.remote_problem
    finally:
        serve_encoder(None, cluster, "cpu", 2, 0.5, 0.0)


def test_without_ray_installed_the_message_says_what_to_install(monkeypatch, tmp_path, tiny_checkpoint):
    import sys

    from samdash.errors import SamdashError

    monkeypatch.setitem(sys.modules, "ray", None)  # what Python does for a package that is not there
    with pytest.raises(SamdashError, match=r"pip install -r requirements-ray.txt"):
        sam_engine(None, _settings(tmp_path, tiny_checkpoint, encoder="ray"), EmbeddingCache(1 << 20))


def test_the_ray_data_cli_writes_byte_identical_files_to_the_local_cli(cluster, tmp_path, monkeypatch):
    from tests.test_cli import _run, write_photos

    folder = write_photos(tmp_path / "photos", 6, name="photo", seed=3)
    monkeypatch.setenv("SAMDASH_DATA_DIR", str(tmp_path / "data"))
    outputs = {}
    for how in ("local", "ray"):
        extra = ["--ray"] if how == "ray" else []
        code, out, err = _run("segment", str(folder), "--checkpoint", str(cluster), "--device", "cpu", "--box",
                              "40,60,170,180", "--point", "90,110", "--out", str(tmp_path / how),
                              "--format", "coco,yolo,png,cutout,overlay", "--project", how, *extra)
        assert code == 0, err
        assert "6 of 6 images segmented" in out and [f"[{i + 1}/6] photo{i}.png" in out for i in range(6)] == [True] * 6
        outputs[how] = {p.relative_to(tmp_path / how): p.read_bytes() for p in (tmp_path / how).rglob("*") if p.is_file()}
    assert "with an actor pool on Ray Data" in out
    assert len(outputs["local"]) == 6 * 7 and outputs["ray"] == outputs["local"]
    # Saved into a project too: the same objects, each image decoded here once the cluster has segmented it.
    store = Store(tmp_path / "data")
    saved = {p.name: [[s.compact_mask.counts for s in store.load_workspace(info)[0].segments] for info in store.images(p.id)]
             for p in store.projects()}
    assert [len(masks) for masks in saved["local"]] == [1] * 6 and saved["ray"] == saved["local"]
