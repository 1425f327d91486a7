from __future__ import annotations

import threading

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from samdash.lru import ByteLRU
from samdash.masks import CompactMask


def _blob(height: int = 300, width: int = 400) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    mask = (xx - 150) ** 2 + (yy - 120) ** 2 < 70**2
    mask[110:130, 140:160] = False  # a hole
    mask[250:280, 300:390] = True  # a second part
    return mask


def test_a_compact_mask_decodes_to_the_same_pixels_and_knows_its_area_and_box():
    mask = _blob()
    compact = CompactMask.encode(mask)
    assert compact.size == (300, 400)
    assert compact.area == int(mask.sum())
    ys, xs = np.nonzero(mask)
    assert compact.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    np.testing.assert_array_equal(compact.decode(), mask)
    again = CompactMask.from_rle(compact.size, compact.counts.decode("ascii"))
    np.testing.assert_array_equal(again.decode(), mask)
    assert compact.nbytes < mask.nbytes / 50


def test_decoded_pixels_are_shared_read_only_and_the_callers_array_stays_writable():
    mask = _blob()
    compact = CompactMask.encode(mask)
    mask[0, 0] = True  # the caller's array is still its own
    decoded = compact.decode()
    assert decoded is compact.decode() and not decoded[0, 0]
    with pytest.raises(ValueError):
        decoded[0, 0] = True


def test_masks_decode_again_once_the_shared_cache_has_let_them_go():
    masks = [np.roll(_blob(), 10 * i, axis=1) for i in range(3)]
    compacts = [CompactMask.encode(m) for m in masks]
    # Far more masks than the cache holds: the first ones are evicted and must decode from their RLE.
    for _ in range(100):
        CompactMask.encode(_blob(1000, 1000))
    for mask, compact in zip(masks, compacts):
        np.testing.assert_array_equal(compact.decode(), mask)
    assert compacts[0].decode().flags.c_contiguous


def test_the_byte_bound_evicts_least_recently_used_first():
    cache: ByteLRU[str, bytes] = ByteLRU(100, len)
    cache.put("a", b"x" * 40)
    cache.put("b", b"x" * 40)
    assert cache.get("a") is not None  # now b is the least recently used
    cache.put("c", b"x" * 40)
    assert cache.get("b") is None and cache.get("a") is not None and cache.nbytes == 80
    assert cache.discard(lambda key: key != "a") == 1 and len(cache) == 1


def test_a_failed_computation_leaves_nothing_behind_and_the_next_request_computes_again():
    cache: ByteLRU[str, bytes] = ByteLRU(100, len)
    calls = []

    def flaky() -> bytes:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("encoder crashed")
        return b"ok"

    with pytest.raises(RuntimeError):
        cache.get_or_compute("k", flaky)
    result: list[bytes] = []
    worker = threading.Thread(target=lambda: result.append(cache.get_or_compute("k", flaky)))
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "a request after a failed computation must not wait forever"
    assert result == [b"ok"] and len(calls) == 2


def test_concurrent_requests_for_one_key_compute_it_once():
    cache: ByteLRU[str, bytes] = ByteLRU(100, len)
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow() -> bytes:
        calls.append(1)
        started.set()
        release.wait(5)
        return b"v"

    threads = [threading.Thread(target=cache.get_or_compute, args=("k", slow)) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.wait(5)
    release.set()
    for thread in threads:
        thread.join(5)
    assert len(calls) == 1


def test_rle_matches_pycocotools_for_coco_files():
    mask = _blob()
    compact = CompactMask.encode(mask)
    reference = coco_mask.encode(np.asfortranarray(mask, dtype=np.uint8))
    assert compact.counts == reference["counts"]
