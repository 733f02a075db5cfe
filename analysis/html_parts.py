"""The two HTML pieces every section of the report is made of: escaped text and a pandas table."""

from __future__ import annotations

import html

import pandas as pd


def escape(text: object) -> str:
    """`text` as HTML text."""
    return html.escape(str(text))


def table(frame: pd.DataFrame, classes: str | None = None) -> str:
    """`frame` as an HTML table: no index, "–" for a missing value, floats to 3 decimals."""
    return frame.to_html(index=False, border=0, na_rep="–", escape=True, classes=classes,
                         float_format=lambda v: f"{v:.3f}")
