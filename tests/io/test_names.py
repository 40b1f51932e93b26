"""safe_filename: names from untrusted DICOM text stay inside the output folder."""

from __future__ import annotations

import re

import pytest

from app.io.names import MAX_NAME_LENGTH, safe_filename

SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("../../x", "x"),
        ("a/b\\c", "a_b_c"),
        ("CT Body 3.0", "CT_Body_3.0"),
        ("Leber Übersicht – Phase", "Leber_Ubersicht_Phase"),
        ("日本語", "output"),
        ("", "output"),
        ("   ", "output"),
        ("..", "output"),
        ("/", "output"),
        ("a..b", "a.b"),
        (".hidden", "hidden"),
        ("-rf", "rf"),
        ("nul", "_nul"),
        ("CON.txt", "_CON.txt"),
        ("seg\x00name\n", "seg_name"),
    ],
)
def test_cases(text, expected):
    assert safe_filename(text) == expected


def test_default_and_length():
    assert safe_filename("", default="series") == "series"
    assert len(safe_filename("x" * 500)) == MAX_NAME_LENGTH
    assert safe_filename("ab" + "." * 10 + "cd", max_length=3) == "ab"
    with pytest.raises(ValueError):
        safe_filename("x", max_length=0)


@pytest.mark.parametrize(
    "text", ["../../x", "..\\..\\evil", "/etc/passwd", "a/../../b", "~/.ssh", "C:\\Windows"]
)
def test_stays_inside_the_output_folder(tmp_path, text):
    name = safe_filename(text)
    assert SAFE.match(name) and ".." not in name
    out = (tmp_path / name).resolve()
    assert out.parent == tmp_path.resolve()
