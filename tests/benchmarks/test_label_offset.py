"""The label-offset benchmark on the real ISBI 2012 slices."""

import json

from benchmarks.label_offset import main


def test_the_isbi_slices_sit_off_along_y(shared_data, tmp_path):
    assert main(["--data", str(shared_data / "isbi2012"), "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "label_offset.json").read_text())
    assert len(record["slices"]) == 24
    x, y = record["median"]
    assert abs(x) < 0.3 and 0.4 < y < 0.9
