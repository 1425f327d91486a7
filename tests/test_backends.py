from __future__ import annotations

import threading

import pytest
import torch
from segment_anything import SamPredictor
from segment_anything.modeling.image_encoder import Attention, ImageEncoderViT

from samdash.backends import SdpaImageEncoder, attention, available_backends, make_encoder
from samdash.engine import EmbeddingCache
from samdash.sam_engine import SamEngine
from samdash.errors import SamdashError
from tests.agreement import assert_same_candidates
from tests.tiny_sam import build_tiny_sam

BACKENDS = available_backends()
# Every backend that runs the encoder another way than the model's own code does.
FAST_BACKENDS = [name for name in BACKENDS if name != "eager"]


def _relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


def _randomise_rel_pos(model: torch.nn.Module, seed: int) -> None:
    """Fresh models start with zero relative-position tables, which would hide a wrong bias."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, Attention) and module.use_rel_pos:
                module.rel_pos_h.copy_(torch.randn(module.rel_pos_h.shape, generator=generator) * 0.5)
                module.rel_pos_w.copy_(torch.randn(module.rel_pos_w.shape, generator=generator) * 0.5)


@pytest.fixture(scope="module")
def model():
    sam = build_tiny_sam(seed=3).eval()
    assert any(block.window_size == 0 for block in sam.image_encoder.blocks), "needs a global-attention block"
    _randomise_rel_pos(sam, seed=4)
    return sam


@pytest.fixture(scope="module")
def encoders(model):
    return {name: make_encoder(model, name) for name in BACKENDS}


@pytest.fixture(scope="module")
def preprocessed(model, scene) -> torch.Tensor:
    predictor = SamPredictor(model)
    resized = predictor.transform.apply_image(scene)
    tensor = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None]
    return model.preprocess(tensor)


@pytest.fixture(scope="module")
def eager_embedding(model, preprocessed) -> torch.Tensor:
    """The reference: segment_anything's own image encoder, run as it is."""
    encoder = make_encoder(model, "eager")
    assert type(encoder) is ImageEncoderViT and type(encoder.blocks[0].attn).forward is Attention.forward
    with torch.inference_mode():
        return encoder(preprocessed)


@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_embedding_matches_eager(model, encoders, preprocessed, eager_embedding, name):
    """Within 1e-4 of the largest value: float32 sums taken in another order, never a different function."""
    assert encoders[name] is not model.image_encoder
    with torch.inference_mode():
        actual = encoders[name](preprocessed)
    assert actual.shape == eager_embedding.shape == (1, 256, 64, 64)
    assert _relative(actual, eager_embedding) <= 1e-4


@pytest.mark.parametrize("name", BACKENDS)
def test_masks_match_stock_predictor(model, encoders, scene, name):
    engine = SamEngine(model, "tiny", EmbeddingCache(64 << 20), encoder=encoders[name])
    assert_same_candidates(engine, SamPredictor(model), scene)


@pytest.mark.parametrize(
    ("shape", "window", "budget"),
    [
        ((1, 64, 64, 32), 0, 1 << 20),  # global: 64 rows in bands of 2
        ((1, 64, 64, 32), 0, 3 << 19),  # bands of 3 rows: the last band is shorter
        ((3, 14, 14, 32), 14, 1 << 30),  # windows in a batch, one band
        ((2, 9, 11, 32), 0, 1),  # one row per band, and a non-square grid
    ],
)
def test_banded_attention_computes_the_same_function(shape, window, budget):
    torch.manual_seed(5)
    batch, height, width, dim = shape
    attn = Attention(dim, num_heads=2, use_rel_pos=True, input_size=(height, width)).eval()
    _randomise_rel_pos(attn, seed=6)
    x = torch.randn(shape)
    with torch.inference_mode():
        assert _relative(attention(attn, x, budget), attn(x)) <= 1e-5


def test_attention_without_relative_positions():
    torch.manual_seed(7)
    attn = Attention(32, num_heads=4, use_rel_pos=False).eval()
    x = torch.randn(2, 8, 8, 32)
    with torch.inference_mode():
        assert _relative(attention(attn, x), attn(x)) <= 1e-5


def test_sdpa_encoder_shares_the_models_parameters(model):
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    wrapper = make_encoder(model, "sdpa")
    assert isinstance(wrapper, SdpaImageEncoder)
    own = {id(p) for p in model.image_encoder.parameters()}
    assert {id(p) for p in wrapper.parameters()} == own
    assert type(model.image_encoder.blocks[0].attn).forward is Attention.forward
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_auto_picks_an_available_backend(model, preprocessed, eager_embedding):
    encoder = make_encoder(model, "auto")
    with torch.inference_mode():
        assert _relative(encoder(preprocessed), eager_embedding) <= 1e-4


class _PoolingEncoder(torch.nn.Module):
    """Stands in for an encoder that is not SAM's ViT (MobileSAM's TinyViT, say)."""

    img_size = 1024

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Conv2d(3, 256, kernel_size=16, stride=16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.proj(x))


@pytest.mark.parametrize("name", BACKENDS)
def test_other_encoders_run_as_they_are(preprocessed, name):
    sam = build_tiny_sam(seed=8).eval()
    sam.image_encoder = _PoolingEncoder()
    encoder = make_encoder(sam, name)
    if name == "openvino":  # compiled, but from the encoder as it is
        with torch.inference_mode():
            assert _relative(encoder(preprocessed), sam.image_encoder(preprocessed)) <= 1e-4
    else:
        assert encoder is sam.image_encoder


def test_unknown_backend_is_refused(model):
    with pytest.raises(SamdashError, match="Unknown encoder backend"):
        make_encoder(model, "tensorrt")


@pytest.mark.skipif("openvino" not in BACKENDS, reason="openvino is not installed")
def test_openvino_encoder_is_safe_from_several_threads(encoders, preprocessed):
    encoder = encoders["openvino"]
    inputs = [preprocessed, preprocessed.flip(-1), preprocessed * 0.5]
    with torch.inference_mode():
        expected = [encoder(x) for x in inputs]
    results: dict[int, torch.Tensor] = {}

    def run(index: int) -> None:
        with torch.inference_mode():
            results[index] = encoder(inputs[index % 3])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, result in results.items():
        assert torch.equal(result, expected[index % 3])
    assert len(results) == 6
