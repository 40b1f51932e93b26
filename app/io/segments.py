"""What each label value of a segmentation means: name, display colour and coded concepts.

Shared by the DICOM SEG and 3D Slicer writers. Codes are ``(value, scheme, meaning)`` triples as in
DICOM, e.g. ``("78961009", "SCT", "Spleen")``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import InputError

__all__ = [
    "Code",
    "SegmentInfo",
    "ANATOMICAL_STRUCTURE",
    "MAX_LABEL",
    "segments_from_metadata",
    "label_values",
]

Code = tuple[str, str, str]
ANATOMICAL_STRUCTURE: Code = ("123037004", "SCT", "Anatomical Structure")
MAX_LABEL = 65535  # label values are written as 8- or 16-bit unsigned integers


@dataclass(frozen=True)
class SegmentInfo:
    """One segment (label value) of a segmentation.

    Args:
        name: segment label shown to users, e.g. ``"spleen"``.
        rgb: recommended display colour, 0-255 per channel.
        category: segmented property category code ``(value, scheme, meaning)``.
        type: segmented property type code ``(value, scheme, meaning)``.
    """

    name: str
    rgb: tuple[int, int, int]
    category: Code
    type: Code

    def __post_init__(self) -> None:
        if not self.name.strip() or any(c in self.name for c in "\r\n"):
            raise ValueError(f"segment name must be one non-empty line, got {self.name!r}")
        if len(self.rgb) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in self.rgb):
            raise ValueError(f"segment {self.name!r}: rgb must be 3 integers in 0..255, got {self.rgb!r}")
        for field in ("category", "type"):
            code = getattr(self, field)
            if len(code) != 3 or not all(isinstance(v, str) and v for v in code):
                raise ValueError(
                    f"segment {self.name!r}: {field} must be (value, scheme, meaning), got {code!r}"
                )


def segments_from_metadata(
    meta: Mapping[str, Any], source: str | Path = "metadata.json"
) -> dict[int, SegmentInfo]:
    """Segments from a bundle's ``metadata.json`` content (or its ``"segments"`` entry).

    Each entry maps a label value (a string key, as JSON requires) to ``{"name", "color": [r, g, b],
    "category": [value, scheme, meaning], "type": [value, scheme, meaning]}``; ``category`` defaults to
    Anatomical Structure (SCT 123037004), the others are required. Example::

        {"1": {"name": "spleen", "color": [157, 108, 162],
               "category": ["123037004", "SCT", "Anatomical Structure"],
               "type": ["78961009", "SCT", "Spleen"]}}

    Returns:
        label value (>= 1) -> :class:`SegmentInfo`, sorted by label value.

    Raises:
        InputError: naming ``source``, for a missing field, a bad label value, colour or code.
    """
    entries = meta.get("segments", meta)
    if not isinstance(entries, Mapping) or not entries:
        raise InputError(source, 'no segments: expected {"<label value>": {"name": ..., "color": ..., ...}}')
    segments = {}
    for key, entry in entries.items():
        try:
            label = int(key)
            if not 1 <= label <= MAX_LABEL:
                raise ValueError(f"label value must be in 1..{MAX_LABEL} (0 is background), got {label}")
            segments[label] = SegmentInfo(
                name=str(entry["name"]),
                rgb=tuple(int(v) for v in entry["color"]),
                category=tuple(str(v) for v in entry.get("category", ANATOMICAL_STRUCTURE)),
                type=tuple(str(v) for v in entry["type"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            problem = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise InputError(source, f"segment {key!r}: {problem}") from exc
    return dict(sorted(segments.items()))


def label_values(labels: np.ndarray, segments: Mapping[int, SegmentInfo]) -> list[int]:
    """Sorted non-zero label values present in ``labels`` or declared in ``segments``.

    Args:
        labels: boolean or non-negative integer label array (any shape).
        segments: label value -> :class:`SegmentInfo`.

    Raises:
        ValueError: ``labels`` is not boolean/integer in ``0..MAX_LABEL``, a value present in it has
            no :class:`SegmentInfo` in ``segments``, or a declared value is outside ``1..MAX_LABEL``.
    """
    if labels.dtype == bool:
        labels = labels.view(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise ValueError(f"labels must be boolean or non-negative integers, got {labels.dtype}")
    if labels.size and labels.max() > MAX_LABEL:
        raise ValueError(f"label values above {MAX_LABEL} are not supported, got {labels.max()}")
    outside = sorted(v for v in segments if not 1 <= v <= MAX_LABEL)
    if outside:
        raise ValueError(f"segment label values must be in 1..{MAX_LABEL}, got {outside}")
    counts = np.bincount(labels.ravel().astype(np.intp, copy=False))  # much faster than np.unique
    present = {int(v) for v in np.flatnonzero(counts)} - {0}
    undeclared = sorted(present - set(segments))
    if undeclared:
        raise ValueError(f"label values {undeclared} have no SegmentInfo in segments")
    return sorted(present | {int(v) for v in segments})
