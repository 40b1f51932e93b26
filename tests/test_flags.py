"""Boolean choices typed on the command line: words mean what they say, anything else names the choice."""

import re

import pytest

from app.flags import as_bool


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("true", True),
        ("False", False),
        (" TRUE ", True),
        ("no", False),
        ("yes", True),
        ("off", False),
        ("on", True),
        ("0", False),
        ("1", True),
    ],
)
def test_words_and_literals(value, expected):
    assert as_bool(value, "tta") is expected


@pytest.mark.parametrize("value", ["ture", "", 2, None, 0.5, [True]])
def test_anything_else_names_the_choice(value):
    with pytest.raises(ValueError, match="^" + re.escape(f"tta must be true or false, got {value!r}") + "$"):
        as_bool(value, "tta")
