"""Input channels of multi-channel (multi-contrast) volumes: how many a datalist has, and checks that
they match the network's ``in_channels`` before any training or inference happens.

A datalist entry's ``"image"`` is one file (one channel) or a list of co-registered files, one per
channel (nnU-Net ``case_0000``, ``case_0001``... naming). MONAI's ``LoadImaged(ensure_channel_first=True)``
stacks such a list into a ``(C, *spatial)`` image; these helpers make a wrong channel count an
:class:`app.errors.InputError` naming the file and the problem instead of a shape error in a convolution.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform

from app.errors import InputError

__all__ = ["CheckChannels", "CheckChannelsd", "check_channels", "count_channels", "group_channel_files"]

_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})(?P<suffix>\.[^/]+)$")


def _entries(datalist: Mapping | Sequence[Mapping] | str | Path) -> list[Mapping]:
    """Entries of a split datalist (training + validation), a list of entries, or a datalist JSON file."""
    if isinstance(datalist, (str, Path)):
        path = Path(datalist)
        try:
            datalist = json.loads(path.read_text())
        except FileNotFoundError as e:
            problem = "datalist file does not exist (give the run's run_dir, or --in_channels)"
            raise InputError(path, problem) from e
        except json.JSONDecodeError as e:
            raise InputError(path, f"datalist is not valid JSON ({e})") from e
    if isinstance(datalist, Mapping):
        return list(datalist.get("training", [])) + list(datalist.get("validation", []))
    return list(datalist)


def _channels_of(entry: Mapping) -> int:
    image = entry["image"]
    return 1 if isinstance(image, (str, Path)) else len(image)


def _first_file(entry: Mapping) -> str:
    image = entry["image"]
    return str(image if isinstance(image, (str, Path)) else image[0])


def count_channels(datalist: Mapping | Sequence[Mapping] | str | Path) -> int:
    """Number of input channels of a datalist: image files per entry (one file = one channel).

    Args:
        datalist: ``{"training": [...], "validation": [...]}``, a list of entries, or the path of a
            datalist JSON (e.g. a run's ``datalist.json``).

    Returns:
        the channel count shared by every entry.

    Raises:
        InputError: no entries, or entries with different channel counts (names the first odd one).

    Example::

        count_channels([{"image": ["a_0000.nii.gz", "a_0001.nii.gz"], "label": "a.nii.gz"}])  # 2
    """
    entries = _entries(datalist)
    if not entries:
        raise InputError(str(datalist)[:200], "datalist has no entries to count channels from")
    expected = _channels_of(entries[0])
    for entry in entries[1:]:
        n = _channels_of(entry)
        if n != expected:
            raise InputError(
                _first_file(entry),
                f"has {n} channel file(s) but {_first_file(entries[0])} has {expected}; "
                "every case needs the same channels",
            )
    return expected


def check_channels(datalist: Mapping | Sequence[Mapping] | str | Path, expected: int) -> int:
    """Raise unless every entry has ``expected`` channels (the network's ``in_channels``).

    Returns:
        the channel count.

    Raises:
        InputError: ``"<first image>: has 2 channels but the network expects 1 (in_channels)"``.
    """
    n = count_channels(datalist)
    if n != int(expected):
        raise InputError(_first_file(_entries(datalist)[0]), _mismatch(n, int(expected)))
    return n


def _mismatch(found: int, expected: int) -> str:
    return (
        f"has {found} channel{'s' if found != 1 else ''} but the network expects {expected} (in_channels); "
        f"remove the --in_channels override or give data with {expected} channel file(s) per case"
    )


def group_channel_files(entries: Sequence[Mapping], n_channels: int) -> list[dict]:
    """Group single-file inference entries into multi-channel cases by nnU-Net names (``case_0000`` ...).

    With ``n_channels == 1`` the entries are returned unchanged (a name like ``img_0001`` is then a case,
    not a channel).

    Raises:
        InputError: a file without the ``_NNNN`` channel suffix, or a case with the wrong number of channels.
    """
    if n_channels == 1:
        return [dict(e) for e in entries]
    cases: dict[str, list[str]] = {}
    for entry in entries:
        image = entry["image"]
        if not isinstance(image, (str, Path)):
            cases[_first_file(entry)] = [str(p) for p in image]
            continue
        path = Path(image)
        m = _CHANNEL_RE.match(path.name)
        if m is None:
            raise InputError(
                path,
                f"the network expects {n_channels} channels: name channel files case_0000, case_0001, ...",
            )
        cases.setdefault(str(path.parent / (m["case"] + m["suffix"])), []).append(str(path))
    grouped = []
    for files in cases.values():
        files = sorted(files)
        if len(files) != n_channels:
            raise InputError(files[0], _mismatch(len(files), n_channels))
        grouped.append({"image": files})
    return grouped


class CheckChannels(Transform):
    """Raise :class:`InputError` unless a channel-first image has ``expected`` channels; pass it on unchanged.

    Args:
        expected: the channel count the network takes (``in_channels``).

    Input: ``(C, *spatial)`` array or tensor (a MONAI ``MetaTensor`` gives the file name in the error).
    """

    def __init__(self, expected: int) -> None:
        self.expected = int(expected)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        found = int(img.shape[0])
        if found != self.expected:
            meta = getattr(img, "meta", {}) or {}
            name = meta.get("filename_or_obj", "image")
            raise InputError(str(name), _mismatch(found, self.expected))
        return img


class CheckChannelsd(MapTransform):
    """Dictionary version of :class:`CheckChannels`.

    Args:
        keys: keys of the channel-first images to check.
        expected: the channel count the network takes (``in_channels``).
        allow_missing_keys: do not raise for a missing key.
    """

    def __init__(self, keys: KeysCollection, expected: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.checker = CheckChannels(expected)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.checker(d[key])
        return d
