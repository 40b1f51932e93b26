"""``run_dir/report.md``: a training run's command, final and best metrics, history and figures.

:func:`write_run_report` (``python -m app report RUN_DIR``) rebuilds ``curves.png`` from
``history.csv`` and ``overlays.png`` from ``overlays.npz`` (when validation ran), then writes the
markdown summary that links them.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from app.engine.history import CURVES_NAME, HISTORY_NAME, read_history
from app.engine.overlays import OVERLAYS_DATA_NAME, OVERLAYS_NAME, load_cases
from app.engine.plots import plot_curves, plot_overlays
from app.errors import InputError

__all__ = ["REPORT_NAME", "write_run_report"]

REPORT_NAME = "report.md"


def _format(value: float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def _table(rows: Sequence[Mapping[str, float]], columns: Sequence[str], first: Sequence[str] = ()) -> str:
    """A markdown table of ``rows``; ``first`` (optional) labels each row in an extra first column."""
    head = ([""] if first else []) + list(columns)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, row in enumerate(rows):
        cells = ([first[i]] if first else []) + [_format(row.get(c)) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _command(run_dir: Path) -> str:
    try:
        record = json.loads((run_dir / "command.json").read_text())
        return f"`{shlex.join(record['argv'])}` (in `{record['cwd']}`, seed {record['seed']})"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"not recorded ({type(e).__name__} reading command.json)"


def write_run_report(run_dir: str | Path, key_metric: str = "val_mean_dice") -> Path:
    """Rebuild the run's figures and write ``run_dir/report.md``.

    Args:
        run_dir: folder of a training run (must hold ``history.csv``).
        key_metric: validation metric (higher is better) that picks the best epoch.

    Returns:
        the path of ``report.md``.

    Raises:
        InputError: ``run_dir`` is not a folder, has no ``history.csv``, or the history is unreadable
            or empty (the message names the path).
    """
    run_dir = Path(run_dir)
    history = run_dir / HISTORY_NAME
    if not run_dir.is_dir():
        raise InputError(run_dir, "not a folder; give the run_dir of a training run")
    if not history.is_file():
        raise InputError(run_dir, f"no {HISTORY_NAME}: not the run_dir of a training run")
    try:
        rows = read_history(history)
    except (OSError, ValueError) as e:
        raise InputError(history, f"unreadable history ({e})") from e
    if not rows:
        raise InputError(history, "no epochs recorded yet")

    plot_curves(rows, run_dir / CURVES_NAME)
    figures = [f"![training curves]({CURVES_NAME})"]
    if (run_dir / OVERLAYS_DATA_NAME).is_file():
        plot_overlays(load_cases(run_dir / OVERLAYS_DATA_NAME), run_dir / OVERLAYS_NAME)
        figures.append(f"![best and worst validation cases]({OVERLAYS_NAME})")
    else:
        figures.append(f"No {OVERLAYS_DATA_NAME}: no validation has run, so there are no case overlays.")

    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    summary, labels = [rows[-1]], ["last epoch"]
    validated = [r for r in rows if key_metric in r and not math.isnan(r[key_metric])]
    if validated:
        summary += [validated[-1], max(validated, key=lambda r: r[key_metric])]
        labels += ["last validation", f"best validation (highest {key_metric})"]
    text = "\n\n".join(
        [
            f"# Training report: {run_dir.name}",
            f"Command (command.json): {_command(run_dir)}",
            "## Final and best\n\n" + _table(summary, columns, labels),
            "## Figures\n\n" + "\n\n".join(figures),
            f"## History ({HISTORY_NAME})\n\n" + _table(rows, columns),
        ]
    )
    path = run_dir / REPORT_NAME
    path.write_text(text + "\n")
    return path
