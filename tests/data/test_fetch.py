"""Tests for app.data.fetch against a loopback HTTP server serving archives built here (no network)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from app.data import fetch as fetch_module
from app.data.fetch import BASE_URL_ENV, RESOURCES, Resource, fetch
from app.errors import InputError


@dataclass
class Server:
    """Files served by name at ``url``; ``gets`` records every GET path."""

    url: str
    files: dict[str, bytes] = field(default_factory=dict)
    gets: list[str] = field(default_factory=list)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    state = Server(url="")

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, body: bool) -> None:
            data = state.files.get(self.path.removeprefix("/files/"))
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            state.gets.append(self.path)
            self._reply(body=True)

        def do_HEAD(self) -> None:  # noqa: N802 (http.server API)
            self._reply(body=False)

        def log_message(self, format: str, *args: object) -> None:  # silence request logging
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/files"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _msd_tar(tmp_path: Path, task: str = "Task09_Spleen") -> bytes:
    """A tiny MSD-style tar: two NIfTI cases, a test image, dataset.json and macOS ``._*`` junk."""
    root = tmp_path / "build" / task
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True)
    volume = nib.Nifti1Image(np.zeros((4, 4, 2), np.float32), np.eye(4))
    nib.save(volume, root / "imagesTr" / "case_1.nii.gz")
    nib.save(volume, root / "labelsTr" / "case_1.nii.gz")
    nib.save(volume, root / "imagesTs" / "case_2.nii.gz")
    (root / "dataset.json").write_text(json.dumps({"name": task, "training": []}))
    (root / "imagesTr" / "._case_1.nii.gz").write_bytes(b"\x00\x05\x16\x07junk")
    (root / "._dataset.json").write_bytes(b"junk")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(root, arcname=task)
    return buffer.getvalue()


def _serve_msd(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, md5: str | None = None
) -> None:
    """Serve the tiny task tar and point the spleen resource's md5 at it (or at ``md5`` when given)."""
    data = _msd_tar(tmp_path)
    server.files["Task09_Spleen.tar"] = data
    official = RESOURCES["spleen"][0]
    checksum = md5 or hashlib.md5(data).hexdigest()
    monkeypatch.setitem(fetch_module.RESOURCES, "spleen", (Resource(official.url, checksum),))


def test_msd_resources_come_from_monai() -> None:
    assert RESOURCES["spleen"] == (
        Resource(
            "https://msd-for-monai.s3-us-west-2.amazonaws.com/Task09_Spleen.tar",
            "410d4a301da4e5b2f6f86ec3ddba524e",
        ),
    )
    assert RESOURCES["hippocampus"][0].md5 == "9d24dba78a72977dbd1d2e110310f31b"


def test_msd_fetch_layout_junk_removed_and_not_downloaded_twice(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve_msd(server, tmp_path, monkeypatch)
    out = tmp_path / "out"
    task = fetch("spleen", out, base_url=server.url)
    assert task == out / "Task09_Spleen"
    assert {p.name for p in task.iterdir()} == {"imagesTr", "labelsTr", "imagesTs", "dataset.json"}
    assert [p.name for p in (task / "imagesTr").iterdir()] == ["case_1.nii.gz"]
    assert not list(task.rglob("._*"))
    assert [p.name for p in out.iterdir()] == ["Task09_Spleen"]  # no scratch left behind
    assert len(server.gets) == 1

    assert fetch("spleen", out, base_url=server.url) == task
    assert len(server.gets) == 1


def test_msd_checksum_mismatch_leaves_nothing(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve_msd(server, tmp_path, monkeypatch, md5="0" * 32)
    out = tmp_path / "out"
    with pytest.raises(InputError, match="md5 checksum mismatch") as info:
        fetch("spleen", out, base_url=server.url)
    assert info.value.path == f"{server.url}/Task09_Spleen.tar"
    assert list(out.iterdir()) == []


def _tiff(pages: list[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    first, *rest = (Image.fromarray(p) for p in pages)
    first.save(buffer, format="TIFF", save_all=True, append_images=rest)
    return buffer.getvalue()


def _isbi_stacks(n: int = 3) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    return {
        "train-volume.tif": [rng.integers(0, 256, (512, 512), dtype=np.uint8) for _ in range(n)],
        "train-labels.tif": [rng.choice(np.array([0, 255], np.uint8), (512, 512)) for _ in range(n)],
        "test-volume.tif": [rng.integers(0, 256, (512, 512), dtype=np.uint8) for _ in range(n)],
    }


def test_isbi_fetch_writes_pngs_and_source(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stacks = _isbi_stacks()
    server.files.update({name: _tiff(pages) for name, pages in stacks.items()})
    monkeypatch.setenv(BASE_URL_ENV, server.url)
    out = tmp_path / "out"
    root = fetch("isbi2012", out)
    assert root == out / "isbi2012"
    for name, folder in [
        ("train-volume.tif", "train/image"),
        ("train-labels.tif", "train/label"),
        ("test-volume.tif", "test"),
    ]:
        assert sorted(p.name for p in (root / folder).iterdir()) == ["0.png", "1.png", "2.png"]
        for i, page in enumerate(stacks[name]):
            with Image.open(root / folder / f"{i}.png") as png:
                assert png.mode == "L"
                np.testing.assert_array_equal(np.asarray(png), page)
    source = json.loads((root / "SOURCE.json").read_text())
    assert source["files"]["train-labels.tif"] == {
        "url": f"{server.url}/train-labels.tif",
        "sha256": hashlib.sha256(server.files["train-labels.tif"]).hexdigest(),
    }
    assert [p.name for p in out.iterdir()] == ["isbi2012"]
    assert len(server.gets) == 3

    assert fetch("isbi2012", out) == root
    assert len(server.gets) == 3


@pytest.mark.parametrize(
    ("name", "pages", "problem"),
    [
        ("train-labels.tif", [np.full((512, 512), 7, np.uint8)] * 3, "binary"),
        ("train-volume.tif", [np.zeros((256, 512), np.uint8)] * 3, "expected 512x512"),
    ],
)
def test_isbi_invalid_tiff_raises_and_leaves_nothing(
    server: Server, tmp_path: Path, name: str, pages: list[np.ndarray], problem: str
) -> None:
    stacks = _isbi_stacks() | {name: pages}
    server.files.update({n: _tiff(p) for n, p in stacks.items()})
    out = tmp_path / "out"
    with pytest.raises(InputError, match=problem) as info:
        fetch("isbi2012", out, base_url=server.url)
    assert info.value.path == f"{server.url}/{name}"
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "filename"), [("isbi2012", "train-volume.tif"), ("spleen", "Task09_Spleen.tar")]
)
def test_missing_file_raises_naming_url(server: Server, tmp_path: Path, name: str, filename: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(InputError, match="404") as info:
        fetch(name, out, base_url=server.url)
    assert info.value.path == f"{server.url}/{filename}"
    assert list(out.iterdir()) == []


def test_unknown_name_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="spleen, hippocampus, isbi2012"):
        fetch("brats", tmp_path)
