"""Download the real datasets into the layouts the app reads: MSD tasks and ISBI 2012.

``fetch(name, out_dir)`` returns the dataset folder:

* ``spleen`` / ``hippocampus``: ``out_dir/Task09_Spleen`` (``Task04_Hippocampus``) with ``imagesTr``,
  ``labelsTr``, ``imagesTs`` and ``dataset.json``, via MONAI's ``download_and_extract`` with the md5
  MONAI publishes; macOS ``._*`` junk files are removed.
* ``isbi2012``: ``out_dir/isbi2012`` with ``train/image/{i}.png``, ``train/label/{i}.png`` and
  ``test/{i}.png``, converted from the three multi-page TIFFs. No checksum is published for them, so
  their sha256 is recorded in ``SOURCE.json`` and their content is validated instead.

Everything is downloaded and built in a hidden scratch folder inside ``out_dir`` that is always removed;
the dataset folder appears only once complete and verified. A dataset folder already there is kept and
not downloaded again. ``base_url`` (or ``$APP_FETCH_BASE_URL``) replaces everything before the file name
of each URL, e.g. to use a mirror; checksums are still checked.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from monai.apps import DecathlonDataset, HashCheckError, download_and_extract
from PIL import Image, ImageSequence

from app.errors import InputError

__all__ = ["BASE_URL_ENV", "ISBI_BASE_URL", "RESOURCES", "Resource", "fetch"]

logger = logging.getLogger(__name__)

BASE_URL_ENV = "APP_FETCH_BASE_URL"
# The challenge site (brainiac2.mit.edu/isbi_challenge) is gone; this mirror holds the original files.
ISBI_BASE_URL = "https://raw.githubusercontent.com/alexklibisz/isbi-2012/master/data"
_ISBI_FOLDERS = {
    "train-volume.tif": "train/image",
    "train-labels.tif": "train/label",
    "test-volume.tif": "test",
}
_ISBI_SIZE = (512, 512)
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Resource:
    """One file to download.

    Args:
        url: where it is; its last path component is the file name.
        md5: published checksum, checked before anything is extracted; ``None`` where none is published.
    """

    url: str
    md5: str | None = None

    @property
    def filename(self) -> str:
        """The file name at the end of ``url``."""
        return self.url.rsplit("/", 1)[-1]


def _msd(task: str) -> tuple[Resource, ...]:
    return (Resource(DecathlonDataset.resource[task], DecathlonDataset.md5[task]),)


RESOURCES: dict[str, tuple[Resource, ...]] = {
    "spleen": _msd("Task09_Spleen"),
    "hippocampus": _msd("Task04_Hippocampus"),
    "isbi2012": tuple(Resource(f"{ISBI_BASE_URL}/{name}") for name in _ISBI_FOLDERS),
}


def _is_msd_task(folder: Path) -> bool:
    return (
        (folder / "dataset.json").is_file()
        and (folder / "imagesTr").is_dir()
        and (folder / "labelsTr").is_dir()
    )


def _fetch_msd(resources: tuple[Resource, ...], out_dir: Path) -> Path:
    """Download, md5-check and extract one MSD task tar into ``out_dir/<TaskXX_Name>``."""
    (resource,) = resources
    task = resource.filename.removesuffix(".tar")
    dest = out_dir / task
    if _is_msd_task(dest):
        logger.info("%s already present, not downloading again", dest)
        return dest
    if dest.exists():
        raise InputError(dest, f"exists but is not a complete MSD task; remove it and fetch {task} again")
    with tempfile.TemporaryDirectory(prefix=f".{task}.partial-", dir=out_dir) as tmp:
        extracted = Path(tmp, "extracted")
        logger.info("downloading %s", resource.url)
        try:
            download_and_extract(resource.url, Path(tmp, resource.filename), extracted, resource.md5, "md5")
        except HashCheckError as e:
            raise InputError(
                resource.url, f"md5 checksum mismatch (expected {resource.md5}); nothing written"
            ) from e
        except Exception as e:  # monai lets urllib, requests (as bare Exception) and tarfile errors through
            raise InputError(resource.url, f"download or extraction failed: {e}") from e
        for junk in extracted.rglob("._*"):
            if junk.is_file():
                junk.unlink()
        if not _is_msd_task(extracted / task):
            raise InputError(resource.url, f"archive lacks {task}/ with dataset.json, imagesTr, labelsTr")
        (extracted / task).rename(dest)
    logger.info("wrote %s", dest)
    return dest


def _download(url: str, target: Path) -> str:
    """Stream ``url`` into ``target`` and return its sha256; network failure -> InputError naming ``url``."""
    digest = hashlib.sha256()
    logger.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, target.open("wb") as f:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                f.write(chunk)
    except (OSError, http.client.HTTPException) as e:
        raise InputError(url, f"download failed: {e}") from e
    return digest.hexdigest()


def _read_stack(path: Path, url: str) -> list[np.ndarray]:
    """Pages of a multi-page TIFF, each to be 512x512 8-bit grayscale, else InputError naming ``url``."""
    try:
        with Image.open(path) as image:
            if image.format != "TIFF":
                raise InputError(url, f"is {image.format}, expected a multi-page TIFF")
            pages = []
            for k, page in enumerate(ImageSequence.Iterator(image)):
                if page.mode != "L" or page.size != _ISBI_SIZE:
                    width, height = page.size
                    problem = f"page {k} is {width}x{height} mode {page.mode}, expected 512x512 8-bit (L)"
                    raise InputError(url, problem)
                pages.append(np.array(page))
    except OSError as e:
        raise InputError(url, f"not a readable TIFF: {e}") from e
    return pages


def _fetch_isbi(resources: tuple[Resource, ...], out_dir: Path) -> Path:
    """Download the three ISBI 2012 TIFFs, validate them and write them as PNGs into ``out_dir/isbi2012``."""
    dest = out_dir / "isbi2012"
    if (dest / "SOURCE.json").is_file():
        logger.info("%s already present, not downloading again", dest)
        return dest
    if dest.exists():
        raise InputError(dest, "exists without SOURCE.json (not made by fetch); remove it and fetch again")
    with tempfile.TemporaryDirectory(prefix=".isbi2012.partial-", dir=out_dir) as tmp:
        sources: dict[str, dict[str, str]] = {}
        stacks: dict[str, list[np.ndarray]] = {}
        for resource in resources:
            raw = Path(tmp, resource.filename)
            sources[resource.filename] = {"url": resource.url, "sha256": _download(resource.url, raw)}
            stacks[resource.filename] = _read_stack(raw, resource.url)
        by_name = {r.filename: r.url for r in resources}
        labels = np.stack(stacks["train-labels.tif"])
        if not set(np.unique(labels).tolist()) <= {0, 255}:
            values = np.unique(labels).tolist()
            raise InputError(by_name["train-labels.tif"], f"labels must be binary {{0, 255}}, found {values}")
        if len(stacks["train-volume.tif"]) != len(labels):
            raise InputError(
                by_name["train-labels.tif"],
                f"has {len(labels)} pages but train-volume.tif has {len(stacks['train-volume.tif'])}",
            )
        staging = Path(tmp, "isbi2012")
        for filename, folder in _ISBI_FOLDERS.items():
            (staging / folder).mkdir(parents=True)
            for i, page in enumerate(stacks[filename]):
                Image.fromarray(page).save(staging / folder / f"{i}.png")
        (staging / "SOURCE.json").write_text(json.dumps({"files": sources}, indent=2) + "\n")
        staging.rename(dest)
    logger.info("wrote %s", dest)
    return dest


_FETCHERS: dict[str, Callable[[tuple[Resource, ...], Path], Path]] = {
    "spleen": _fetch_msd,
    "hippocampus": _fetch_msd,
    "isbi2012": _fetch_isbi,
}


def fetch(name: str, out_dir: str | Path, base_url: str | None = None) -> Path:
    """Download dataset ``name`` (``spleen``, ``hippocampus`` or ``isbi2012``) into ``out_dir``.

    Args:
        name: key of ``RESOURCES``.
        out_dir: parent folder, created if needed; the dataset lands in a sub-folder of it.
        base_url: replaces the part of each URL before its file name (default ``$APP_FETCH_BASE_URL``,
            else the official location). Checksums from ``RESOURCES`` are still enforced.

    Returns:
        The dataset folder: ``out_dir/Task09_Spleen``, ``out_dir/Task04_Hippocampus`` or ``out_dir/isbi2012``.

    Raises:
        ValueError: unknown ``name``.
        InputError: download failed, checksum mismatch or invalid content (naming the URL); nothing is left
            behind in ``out_dir`` then.
    """
    if name not in _FETCHERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(_FETCHERS)}")
    resources = RESOURCES[name]
    base = base_url or os.environ.get(BASE_URL_ENV)
    if base:
        resources = tuple(replace(r, url=f"{base.rstrip('/')}/{r.filename}") for r in resources)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return _FETCHERS[name](resources, out)
