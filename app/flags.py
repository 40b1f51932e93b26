"""Boolean bundle choices as typed on the command line.

``python -m monai.bundle run ... --tta false`` hands the config the *string* ``'false'`` (the command
line parser turns only Python literals such as ``False`` into booleans), and a non-empty string is true
in Python: the choice would silently be switched on. Every boolean choice of the bundles is read through
:func:`as_bool`, so ``true``/``false`` (any case), ``yes``/``no``, ``on``/``off`` and ``1``/``0`` mean what
they say and anything else stops the run with the choice's name.
"""

from __future__ import annotations

from typing import Any

__all__ = ["as_bool"]

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def as_bool(value: Any, name: str = "value") -> bool:
    """``value`` as a bool: a bool, the ints 0 and 1, or one of the words above.

    Args:
        value: the configured or command-line value.
        name: the choice's name, for the error message.

    Raises:
        ValueError: naming ``name`` and the value, for anything else (``'ture'``, ``2``, ``None``...).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueError(f"{name} must be true or false, got {value!r}")
