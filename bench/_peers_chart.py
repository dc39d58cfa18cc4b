"""The PNG of bench.peers: per system, saturated tasks/s, light-load run latency
(p50, p95, p99) and CPU ms per run, medians with the repetitions' range as error bars."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bench._peers_stats import SystemFigures

PANELS = (
    ("tasks/s, saturated", (("saturated", "tasks_per_s", "tasks/s"),)),
    ("run latency at the light rate, ms",
     (("light", "p50_ms", "p50"), ("light", "p95_ms", "p95"), ("light", "p99_ms", "p99"))),
    ("CPU ms per run, all processes", (("light", "cpu_ms_per_run", "light"),
                                       ("saturated", "cpu_ms_per_run", "saturated"))),
)


def write_chart(results: Mapping[str, SystemFigures | str], path: Path) -> str | None:
    """Write the chart; returns None, or why it could not be written (one line)."""
    measured = {name: figures for name, figures in results.items() if isinstance(figures, SystemFigures)}
    if not measured:
        return "no system was measured"
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return "matplotlib is not installed: pip install matplotlib (or the taskplane[peers] extra)"
    names = list(measured)
    figure, axes = pyplot.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 4))
    for axis, (title, series) in zip(axes, PANELS, strict=True):
        width = 0.8 / len(series)
        for offset, (phase, field, label) in enumerate(series):
            spreads = [measured[name].figure(phase, field) for name in names]
            positions = [i + (offset - (len(series) - 1) / 2) * width for i in range(len(names))]
            errors = [[s.median - s.low for s in spreads], [s.high - s.median for s in spreads]]
            axis.bar(positions, [s.median for s in spreads], width, yerr=errors, capsize=3, label=label)
        axis.set_xticks(range(len(names)), names)
        axis.set_title(title)
        if title.startswith("run latency"):
            axis.set_yscale("log")  # peers differ by orders of magnitude here
        if len(series) > 1:
            axis.legend()
    failed = [name for name, figures in results.items() if isinstance(figures, str)]
    if failed:
        figure.suptitle("not measured: " + ", ".join(failed), fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return None
