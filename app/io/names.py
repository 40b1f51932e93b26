"""Safe output file names from untrusted text (DICOM tags such as SeriesDescription, input names)."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MAX_NAME_LENGTH", "safe_filename"]

MAX_NAME_LENGTH = 100

# Names Windows refuses for a file whatever its extension.
_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)}


def safe_filename(text: str, default: str = "output", max_length: int = MAX_NAME_LENGTH) -> str:
    """A file name made from ``text`` that cannot leave the folder it is joined to.

    Accents are folded to ASCII, every run of characters outside ``[A-Za-z0-9._-]`` (path separators
    included) becomes one ``_``, runs of dots collapse to one (so no ``..``), leading and trailing
    ``.``, ``_`` and ``-`` are dropped (no hidden files, no option-like names) and the result is cut to
    ``max_length`` characters. Windows device names (``CON``, ``NUL``, ...) get a leading ``_``.

    Args:
        text: untrusted text, e.g. a SeriesDescription like ``"../../x"``.
        default: returned when nothing usable is left (``""``, ``"///"``, ``"..."``).
        max_length: the longest name returned (at least 1).

    Returns:
        a non-empty name of characters ``[A-Za-z0-9._-]`` without ``..`` that does not start with ``.``
        or ``-`` (or ``default``).
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_text)
    name = re.sub(r"\.{2,}", ".", name)
    name = name.strip("._-")[:max_length].rstrip("._-")
    if not name:
        return default
    if name.split(".")[0].upper() in _RESERVED:
        name = f"_{name}"[:max_length]
    return name
