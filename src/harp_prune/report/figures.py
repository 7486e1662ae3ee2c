"""Matplotlib (the ``plots`` extra), drawn off-screen with Agg: figures made here and turned into PNG bytes.

Figures are ``matplotlib.figure.Figure`` objects on an Agg canvas, not pyplot's: no global state, no display,
safe to use from a training process or a test.
"""

from __future__ import annotations

import io
import math
from typing import Any

from harp_prune.errors import HarpError

INSTALL_HINT = "pip install 'harp-prune[plots]'"


def plotting_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def new_figure(columns: int, rows: int = 1, *, width: float = 5.6, height: float = 3.6,
               sharex: bool = False) -> tuple[Any, Any]:
    """A figure and its grid of axes (always two-dimensional)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise HarpError(f"the report's plots need matplotlib, which is not installed; {INSTALL_HINT}") from None
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(rows, columns, squeeze=False, sharex=sharex)


def colours(count: int) -> Any:
    import matplotlib

    return matplotlib.colormaps["tab20" if count > 10 else "tab10"]


def integer_ticks(axis: Any) -> None:
    """Ticks at whole numbers only (epochs)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def to_png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def log_density_position(sparsity: float) -> float:
    """90% -> 1, 99% -> 2, 99.9% -> 3: the paper's axis for high sparsities."""
    return -math.log10(max(1.0 - sparsity, 1e-12))
