"""Presentation helpers of the memory budget (tables for notebook 02 and its plots)."""

from __future__ import annotations

from astrobio_lib.memory.estimate import Estimate
from astrobio_lib.memory.hardware import GB


def breakdown_table(estimates: list[Estimate]) -> "pd.DataFrame":  # noqa: F821
    """Returns GB per device by term at each plan's peak, overheads included (rows: plans), for a
    stacked bar chart."""
    import pandas as pd

    return pd.DataFrame({e.plan.name: {k: v / GB for k, v in e.breakdown.items()} for e in estimates}).T.fillna(0.0)
