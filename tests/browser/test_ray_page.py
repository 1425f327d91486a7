"""The page with SAMDASH_ENCODER=ray in a real browser: images encoded on a Ray Serve deployment, prompts here."""

from __future__ import annotations

import pytest

from tests.browser.conftest import open_page, serve_app
from tests.browser.harness import draw_box, upload, wait_for_canvas, wait_for_objects
from tests.browser.test_page import _scene_png

pytestmark = pytest.mark.browser
ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")


def test_a_box_is_segmented_with_the_image_encoded_on_ray_serve(browser, tiny_checkpoint, tmp_path, artifacts):
    from samdash.ray_encoder import serve_encoder

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        serve.start(proxy_location="Disabled")
        serve_encoder(None, tiny_checkpoint, "cpu", 1, 0.5, 0.0)
        replica = next(a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("SERVE_REPLICA"))
        env = {"SAMDASH_CHECKPOINT": str(tiny_checkpoint), "SAMDASH_MODEL_DIR": str(tmp_path / "models"),
               "SAMDASH_ENCODER": "ray", "SAMDASH_RAY_ADDRESS": ray.get_runtime_context().gcs_address}
        with serve_app(env, tmp_path / "ray-page.log") as served, open_page(browser, served.url) as page:
            upload(page, "scene.png", _scene_png())
            wait_for_canvas(page)
            draw_box(page, (130, 130), (470, 470), image_size=(900, 600))
            wait_for_objects(page, 1)
            sidebar = page.locator("[data-testid=stSidebar]")
            where = sidebar.get_by_text(f"Images are encoded on Ray Serve (samdash-encoder at {env['SAMDASH_RAY_ADDRESS']})")
            where.scroll_into_view_if_needed(timeout=30_000)
            page.screenshot(path=artifacts / "ray-encoder.png")
        assert replica["name"] in {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}
        log = (tmp_path / "ray-page.log").read_text()
        assert "Traceback" not in log, log[-2000:]
    finally:
        serve.shutdown()
        ray.shutdown()
