"""The report's dependency-free SVG bar chart."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from thinkrec.svg_chart import grouped_bars


def test_one_bar_per_label_and_series_with_escaped_text():
    svg = grouped_bars(["MF", "<b>"], {"AUC": [0.8, 0.7], "UAUC": [0.6, 1.5]}, 0.4, 0.9, "A & B")
    root = ET.fromstring(svg)
    bars = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.find("{http://www.w3.org/2000/svg}title")
            is not None]
    assert len(bars) == 4
    heights = [float(b.get("height")) for b in bars]
    assert heights[0] > heights[2] > 0  # 0.8 above 0.7 (same series, two labels)
    assert heights[3] == pytest.approx(340 - 40 - 90)  # 1.5 is clipped to the top of the axis


def test_mismatched_series_are_refused():
    with pytest.raises(ValueError):
        grouped_bars(["MF"], {"AUC": [0.8, 0.7]}, 0, 1, "x")
