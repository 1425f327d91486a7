"""Embeddings on disk: real files in a temporary directory, a tiny SAM, and several processes at once."""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from samdash import embedding_disk
from samdash.embedding_disk import DiskEmbeddings
from samdash.engine import Embedding, EmbeddingCache, cached_embedding
from samdash.sam_engine import SamEngine
from samdash.prompts import box_prompt, point_prompt


def _embedding(name: str, values: int = 1000, cache_id: str = "model") -> Embedding:
    """A stand-in embedding whose features follow from its name, so a reader can tell whose they are."""
    seed = int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "little")
    features = np.random.default_rng(seed).standard_normal((1, values), dtype=np.float32)
    return Embedding((cache_id, name), (30, 40), (24, 32), features, features.nbytes, encode_seconds=1.5)


def _files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.emb"))


def test_an_encoded_embedding_comes_back_bit_for_bit(tiny_sam, scene, tmp_path):
    disk = DiskEmbeddings(tmp_path, 64 << 20)
    engine = SamEngine(tiny_sam, "tiny", EmbeddingCache(64 << 20), disk=disk)
    embedding = engine.embed(scene, "scene")
    stored = disk.load(("tiny", "scene"))
    assert stored is not None and stored.features.dtype == np.float32
    np.testing.assert_array_equal(stored.features.view(np.uint32), embedding.features.numpy().view(np.uint32))
    assert (stored.key, stored.original_size, stored.input_size) == (("tiny", "scene"), (480, 640), (768, 1024))
    assert stored.encode_seconds == embedding.encode_seconds and stored.nbytes == embedding.nbytes


def test_a_restarted_engine_reads_the_embedding_instead_of_encoding(tiny_sam, scene, tmp_path):
    first = SamEngine(tiny_sam, "tiny", EmbeddingCache(64 << 20), disk=DiskEmbeddings(tmp_path, 64 << 20))
    before = first.embed(scene, "scene")
    # As after a server restart: a new engine, an empty memory cache, the same directory.
    second = SamEngine(tiny_sam, "tiny", EmbeddingCache(64 << 20), disk=DiskEmbeddings(tmp_path, 64 << 20))
    after = second.embed(scene, "scene")
    assert second.encoder_calls == 0 and first.encoder_calls == 1
    for prompt in (box_prompt((120, 100, 320, 300), 640, 480), point_prompt((480, 360), 1, 640, 480)):
        expected, got = first.predict(before, prompt), second.predict(after, prompt)
        np.testing.assert_array_equal(got.masks, expected.masks)
        np.testing.assert_array_equal(got.scores, expected.scores)


def test_the_page_finds_an_embedding_on_disk_without_encoding(tiny_sam, scene, tmp_path):
    SamEngine(tiny_sam, "tiny", EmbeddingCache(64 << 20), disk=DiskEmbeddings(tmp_path, 64 << 20)).embed(scene, "scene")
    restarted = SamEngine(tiny_sam, "tiny", EmbeddingCache(64 << 20), disk=DiskEmbeddings(tmp_path, 64 << 20))
    assert cached_embedding(restarted, "another image") is None
    found = cached_embedding(restarted, "scene")
    assert found is not None and restarted.encoder_calls == 0
    assert restarted.cache.get(("tiny", "scene")) is found  # read once, then served from memory


def test_another_checkpoint_does_not_take_the_embedding(tiny_sam, scene, tmp_path):
    SamEngine(tiny_sam, "a", EmbeddingCache(64 << 20), disk=DiskEmbeddings(tmp_path, 64 << 20)).embed(scene, "scene")
    other = SamEngine(tiny_sam, "b", EmbeddingCache(64 << 20), disk=DiskEmbeddings(tmp_path, 64 << 20))
    other.embed(scene, "scene")
    assert other.encoder_calls == 1 and len(_files(tmp_path)) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip a byte", "empty"])
def test_a_damaged_file_counts_as_missing_and_is_removed(tiny_sam, scene, tmp_path, damage):
    disk = DiskEmbeddings(tmp_path, 64 << 20)
    SamEngine(tiny_sam, "tiny", EmbeddingCache(64 << 20), disk=disk).embed(scene, "scene")
    (path,) = _files(tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip a byte":
        data[-1000] ^= 0x40
    else:
        data = bytearray()
    path.write_bytes(data)
    assert disk.load(("tiny", "scene")) is None
    assert not path.exists()
    again = SamEngine(tiny_sam, "tiny", EmbeddingCache(64 << 20), disk=disk)
    again.embed(scene, "scene")
    assert again.encoder_calls == 1 and disk.load(("tiny", "scene")) is not None


def test_a_failed_write_leaves_the_previous_file_and_no_temporary_one(tmp_path, monkeypatch):
    disk = DiskEmbeddings(tmp_path, 1 << 20)
    old = _embedding("a")
    disk.save(old)

    def fail(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(embedding_disk.os, "replace", fail)
    disk.save(Embedding(old.key, (1, 1), (1, 1), np.zeros(3, np.float32), 12, 0.0))  # logged, not raised
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in _files(tmp_path)]
    np.testing.assert_array_equal(disk.load(old.key).features, old.features)


def test_least_recently_used_files_go_first_and_the_bound_holds(tmp_path):
    probe = DiskEmbeddings(tmp_path / "probe", 1 << 20)
    probe.save(_embedding("a"))
    size = _files(tmp_path / "probe")[0].stat().st_size
    disk = DiskEmbeddings(tmp_path / "cache", 3 * size + size // 2)  # room for three
    for name in "abc":
        disk.save(_embedding(name))
    assert disk.load(("model", "a")) is not None  # a is now the most recently used
    disk.save(_embedding("d"))
    assert disk.load(("model", "b")) is None  # the least recently used went
    assert all(disk.load(("model", name)) is not None for name in "acd")
    disk.save(_embedding("e"))
    assert disk.load(("model", "a")) is None and disk.load(("model", "e")) is not None
    assert sum(p.stat().st_size for p in _files(tmp_path / "cache")) <= disk.max_bytes


def test_a_key_unsafe_for_file_names_stays_inside_the_directory(tmp_path):
    disk = DiskEmbeddings(tmp_path / "cache", 1 << 20)
    embedding = _embedding("../../escape", cache_id="vit_b:/home/me/sam vit_b.pth:375042383:1700000000")
    disk.save(embedding)
    assert len(_files(tmp_path / "cache")) == 1 and sorted(tmp_path.iterdir()) == [tmp_path / "cache"]
    np.testing.assert_array_equal(disk.load(embedding.key).features, embedding.features)


def test_a_budget_of_zero_keeps_nothing(tmp_path):
    disk = DiskEmbeddings(tmp_path / "cache", 0)
    disk.save(_embedding("a"))
    assert disk.load(("model", "a")) is None and not (tmp_path / "cache").exists()


class _Problems(logging.Handler):
    """What the store complains of (a file it could not read or write), as a list."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _writer(directory: str, max_bytes: int, worker: int, rounds: int) -> list[str]:
    """Save and read back shared and own keys, many times; return what went wrong, a torn file read included."""
    disk = DiskEmbeddings(Path(directory), max_bytes)
    complaints = _Problems()
    logging.getLogger(embedding_disk.__name__).addHandler(complaints)
    problems = complaints.messages
    names = [f"shared{i}" for i in range(4)] + [f"own{worker}-{i}" for i in range(2)]
    for round_ in range(rounds):
        for name in names[round_ % 2 :] + names[: round_ % 2]:
            expected = _embedding(name)
            disk.save(expected)
            for other in names:
                found = disk.load(("model", other))
                if found is not None and not np.array_equal(found.features, _embedding(other).features):
                    problems.append(f"{other} read back wrong")
    return problems


def test_processes_writing_one_directory_leave_only_whole_files(tmp_path):
    size = len(embedding_disk._encode(_embedding("shared0")))
    max_bytes = 5 * size  # fewer than the keys written: evictions run while others write and read
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.starmap(_writer, [(str(tmp_path), max_bytes, worker, 15) for worker in range(3)])
    assert results == [[], [], []]
    files = _files(tmp_path)
    assert files and sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in files]  # no temporary file left
    assert sum(p.stat().st_size for p in files) <= max_bytes
    disk = DiskEmbeddings(tmp_path, max_bytes)
    names = [f"shared{i}" for i in range(4)] + [f"own{w}-{i}" for w in range(3) for i in range(2)]
    found = {name: disk.load(("model", name)) for name in names}
    assert sum(embedding is not None for embedding in found.values()) == len(files)  # every file is a whole embedding
    for name, embedding in found.items():
        if embedding is not None:
            np.testing.assert_array_equal(embedding.features, _embedding(name).features)
