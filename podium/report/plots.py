"""Metric curves as PNG bytes (matplotlib's Agg canvas: no display, no pyplot state)."""

import io
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

__all__ = ["Line", "curve_png"]


@dataclass
class Line:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: Optional[str] = None
    style: str = "-"


def curve_png(
    lines: Sequence[Line],
    title: str,
    stage_starts: Sequence[Tuple[int, str]] = (),
    xlabel: str = "epoch",
    size: Tuple[float, float] = (4.8, 3.0),
) -> Optional[bytes]:
    """One axes: every line (non-finite points dropped), dashed grey lines where a stage starts.
    None when no line has a finite point."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=size, dpi=80)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    drawn = 0
    for line in lines:
        points = [(x, y) for x, y in zip(line.xs, line.ys) if math.isfinite(y)]
        if not points:
            continue
        xs, ys = zip(*points)
        axes.plot(xs, ys, line.style, marker="o", markersize=3, label=line.label, color=line.color)
        drawn += 1
    if not drawn:
        return None
    for number, (epoch, stage) in enumerate(stage_starts):
        x = epoch - 0.5 if number else epoch
        if number:
            axes.axvline(x, color="grey", linestyle="--", linewidth=1)
        if len(stage_starts) > 1:
            axes.text(
                x,
                0.99,
                f" {stage}",
                transform=axes.get_xaxis_transform(),
                fontsize=8,
                color="grey",
                va="top",
                ha="left",
            )
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(xlabel)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
