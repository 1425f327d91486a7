"""SAM's image encoder as a Ray Serve application, shared by any number of page and CLI processes.

The encoder is the only heavy step: it runs on the Ray cluster's replicas
(GPU or CPU, as many as the cluster has), while prompts stay in each process,
tens of milliseconds with no network hop per click. A request is the image as
SAM's transform resized it (its longer side the model's input side: a few MB
of bytes, not the photo), the answer the embedding. A replica loads its model
once; a request it cannot take (not an image, the wrong size) is answered with
an error and the replica stays up. Ray is optional: it is imported only here.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from segment_anything.modeling import Sam

from samdash.errors import EncoderError, SamdashError

APP_NAME = "samdash-encoder"
DEPLOYMENT_NAME = "SamEncoder"
T = TypeVar("T")
INSTALL_HINT = "Ray is not installed: `pip install -r requirements-ray.txt` (ray[serve])."


def ray_modules() -> tuple[Any, Any]:
    """``ray`` and ``ray.serve``, or an error that says what to install."""
    try:
        import ray  # noqa: PLC0415 - optional
        from ray import serve  # noqa: PLC0415
    except ImportError as exc:
        raise SamdashError(INSTALL_HINT) from exc
    return ray, serve


def start_or_join(address: str | None) -> Any:
    """Join the Ray cluster at ``address``, or start one on this machine when none is given; ``ray``."""
    ray, _ = ray_modules()
    if not ray.is_initialized():
        if address:
            ray.init(address=address)
        else:
            ray.init(include_dashboard=False)
    return ray


def weights_fingerprint(model: Sam) -> str:
    """A digest of the image encoder's weights (names, shapes, leading values): an embedding is only of use to a
    decoder of the same model, so the page checks the replicas' model against its own before sending anything."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.image_encoder.state_dict().items()):
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().flatten()[:256].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


class EncoderReplica:
    """One replica of the deployment: a model loaded once, encoding one image per request."""

    def __init__(self, model_type: str | None, checkpoint: str | None, device: str) -> None:
        from samdash.backends import make_encoder  # noqa: PLC0415 - inside the replica's process
        from samdash.config import Settings  # noqa: PLC0415
        from samdash.models import load_model, select_device  # noqa: PLC0415

        settings = replace(Settings.from_env(), checkpoint=Path(checkpoint) if checkpoint else None, device=device)
        loaded = load_model(model_type, settings, select_device(device))
        self.model = loaded.model
        self.side = loaded.model.image_encoder.img_size
        self.encoder = make_encoder(loaded.model, settings.encoder_backend)
        self._fingerprint = weights_fingerprint(loaded.model)

    def fingerprint(self) -> str:
        return self._fingerprint

    @torch.inference_mode()
    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        image = request.get("image") if isinstance(request, dict) else None
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError("not an image: send an H×W×3 array of 8-bit RGB values")
        if max(image.shape[:2]) != self.side or min(image.shape[:2]) > self.side:
            raise ValueError(f"the image is {image.shape[1]}×{image.shape[0]} px: send it resized so that its "
                             f"longer side is {self.side} px, as SAM's transform does")
        start = time.perf_counter()
        device = next(self.model.parameters()).device
        # Ray hands the array over read-only (from its object store), and PyTorch wants to own what it wraps.
        tensor = torch.as_tensor(np.require(image, requirements="W"), device=device).permute(2, 0, 1).contiguous()[None]
        features = self.encoder(self.model.preprocess(tensor))
        return {"features": features.cpu().numpy(), "seconds": time.perf_counter() - start}


def serve_encoder(model_type: str | None, checkpoint: Path | None, device: str, replicas: int,
                  cpus_per_replica: float, gpus_per_replica: float) -> Any:
    """Run (or update) the samdash-encoder application on the connected Ray cluster; its handle."""
    _, serve = ray_modules()
    deployment = serve.deployment(EncoderReplica, name=DEPLOYMENT_NAME).options(
        num_replicas=replicas,
        ray_actor_options={"num_cpus": cpus_per_replica, "num_gpus": gpus_per_replica},
        max_ongoing_requests=2,
    )
    app = deployment.bind(model_type, str(checkpoint) if checkpoint else None, device)
    return serve.run(app, name=APP_NAME, route_prefix=None)


def _off_loop(call: Callable[[], T]) -> T:
    """``call()``, on a thread of its own when this one runs an asyncio loop (a notebook, some test runners):
    Ray's blocking calls refuse to run there."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return call()
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


class RayEncoder:
    """The client side: sends resized images to the deployment, with a timeout and one retry on a replica that died."""

    def __init__(self, address: str, timeout_s: float, fingerprint: str) -> None:
        _off_loop(lambda: self._connect(address, timeout_s, fingerprint))

    def _connect(self, address: str, timeout_s: float, fingerprint: str) -> None:
        ray, serve = ray_modules()
        self.where = f"Ray Serve ({APP_NAME} at {address})"
        self.timeout_s = timeout_s
        self.retries = 0  # requests sent again after their replica died
        try:
            if not ray.is_initialized():
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            self._handle = serve.get_app_handle(APP_NAME)
            theirs = self._handle.fingerprint.remote().result(timeout_s=timeout_s)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds; all mean the same to the analyst
            raise EncoderError(f"the image encoder at {self.where} cannot be reached: {error_line(exc)}") from exc
        if theirs != fingerprint:
            raise EncoderError(f"the image encoder at {self.where} runs other weights than this server's model "
                               "(start it with the same checkpoint)")

    def encode(self, resized: np.ndarray) -> tuple[np.ndarray, float]:
        """The embedding of an image already resized by SAM's transform, and the replica's encode seconds."""
        return _off_loop(lambda: self._encode(resized))

    def _encode(self, resized: np.ndarray) -> tuple[np.ndarray, float]:
        ray, serve = ray_modules()
        last: Exception | None = None
        for _ in range(2):  # a replica that died mid-request: once more, on another one
            try:
                running = APP_NAME in serve.status().applications
            except Exception as exc:  # noqa: BLE001 - the cluster itself is gone
                raise EncoderError(f"the Ray cluster of {self.where} cannot be reached: {error_line(exc)}") from exc
            if not running:
                raise EncoderError(f"the image encoder is not running: no {APP_NAME} application at {self.where}")
            response = self._handle.remote({"image": resized})
            try:
                answer = response.result(timeout_s=self.timeout_s)
                return answer["features"], float(answer["seconds"])
            except TimeoutError as exc:
                response.cancel()  # not left queued in front of the next image
                raise EncoderError(f"the image encoder at {self.where} did not answer within {self.timeout_s:g} s") from exc
            except ValueError as exc:  # the replica refused the request; retrying changes nothing
                raise EncoderError(f"the image encoder refused the image: {error_line(exc)}") from exc
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
                last = exc
                self.retries += 1
            except Exception as exc:  # noqa: BLE001
                raise EncoderError(f"the image encoder at {self.where} failed: {error_line(exc)}") from exc
        raise EncoderError(f"the image encoder's replicas died twice during the request: {error_line(last)}")


def error_line(exc: BaseException | None) -> str:
    """The last line of what went wrong, without Ray's traceback or the exception's class name."""
    text = str(exc).strip().splitlines()
    line = next((line for line in reversed(text) if line.strip() and not line.startswith(" ")), type(exc).__name__)
    return re.sub(r"^[\w.]+(Error|Exception): ", "", line)
