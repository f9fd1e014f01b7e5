"""Chart helpers shared by the pages."""

from __future__ import annotations

from typing import Any


def counts(figure: Any) -> Any:
    """A chart of counts: its y-axis starts at zero (plotly's autorange puts an all-zero line
    between -1 and 1, which reads as negative counts)."""
    figure.update_yaxes(rangemode="tozero")
    return figure
