"""A project from a server folder on the page (AppTest): only with SAMDASH_IMAGE_ROOTS, into the current project or a new one."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from samdash.store import Store
from tests.page_driver import APP


def _picture(seed: int, fmt: str) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def roots(monkeypatch, tiny_page_env, tmp_path) -> Path:
    """A root holding ``survey/`` with two images and a broken file, and a secret folder beside the root."""
    root = tmp_path / "shared"
    survey = root / "survey"
    survey.mkdir(parents=True)
    (survey / "a.png").write_bytes(_picture(1, "PNG"))
    (survey / "b.jpg").write_bytes(_picture(2, "JPEG"))
    (survey / "broken.jpg").write_bytes(b"\xff\xd8\xff not a JPEG at all")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key.png").write_bytes(_picture(3, "PNG"))
    monkeypatch.setenv("SAMDASH_IMAGE_ROOTS", str(root))
    return root


def _page(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception
    return at


def _add_folder(at: AppTest, label: str) -> None:
    picker = at.selectbox(key="server-folder")
    picker.select_index(picker.options.index(label)).run()
    at.button(key="server-folder-add").click().run()
    assert not at.exception


def test_a_folder_starts_a_project_named_after_it_and_opens_its_first_image(roots):
    at = _page()
    assert at.selectbox(key="server-folder").options == ["shared", "shared/survey"]  # not the secret folder beside it
    _add_folder(at, "shared/survey")
    store = Store(Path(os.environ["SAMDASH_DATA_DIR"]))
    [project] = store.projects()
    assert project.name == "survey"
    assert [i.name for i in store.images(project.id)] == ["a.png", "b.jpg"]
    assert at.query_params["project"] == project.id and at.query_params["image"] == "1"
    assert at.session_state["samdash"].image.name == "a.png"
    [summary] = [w.value for w in at.sidebar.warning if "Added" in w.value]
    assert summary.startswith("Added 2 images, 1 skipped: broken.jpg ")


def test_a_folder_goes_into_the_current_project_and_twice_adds_nothing(roots):
    store = Store(Path(os.environ["SAMDASH_DATA_DIR"]))
    project = store.create_project("Mine")
    at = _page({"project": project.id})
    _add_folder(at, "shared/survey")
    at.button(key="server-folder-add").click().run()  # the same folder again
    assert [p.name for p in store.projects()] == ["Mine"]
    assert [i.name for i in store.images(project.id)] == ["a.png", "b.jpg"]
    [summary] = [w.value for w in at.sidebar.warning if "Added" in w.value]
    assert summary.startswith("Added 0 images, 2 already in the project, 1 skipped")


def test_without_roots_there_is_no_folder_control(roots, monkeypatch):
    monkeypatch.delenv("SAMDASH_IMAGE_ROOTS")
    at = _page()
    assert not [s for s in at.selectbox if s.key == "server-folder"]
    assert not [b for b in at.button if b.key == "server-folder-add"]
