"""A grouped bar chart as standalone SVG text, for the markdown report (no plotting dependency)."""

from __future__ import annotations

from html import escape

COLOURS = ("#457b9d", "#e9a23b", "#2a9d8f", "#e76f51")


def grouped_bars(labels: list[str], series: dict[str, list[float]], low: float, high: float, title: str,
                 width: int = 860, height: int = 340) -> str:
    """Bars of each series per label, on a y axis from ``low`` to ``high`` (values outside are clipped)."""
    if not labels or any(len(values) != len(labels) for values in series.values()):
        raise ValueError("every series needs one value per label")
    left, right, top, bottom = 50, 10, 40, 90
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / len(labels)
    bar = slot * 0.8 / max(len(series), 1)

    def y_of(value: float) -> float:
        share = (min(max(value, low), high) - low) / (high - low)
        return top + plot_h * (1 - share)

    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             'font-family="Helvetica, Arial, sans-serif" font-size="11">'),
             f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">'
             f'{escape(title)}</text>']
    for step in range(6):
        value = low + (high - low) * step / 5
        y = y_of(value)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.2f}</text>')
    for number, label in enumerate(labels):
        x0 = left + slot * number + slot * 0.1
        for index, (name, values) in enumerate(series.items()):
            y = y_of(values[number])
            parts.append(f'<rect x="{x0 + bar * index:.1f}" y="{y:.1f}" width="{bar - 1:.1f}" '
                         f'height="{top + plot_h - y:.1f}" fill="{COLOURS[index % len(COLOURS)]}">'
                         f'<title>{escape(label)} {escape(name)}: {values[number]:.4f}</title></rect>')
        cx = left + slot * (number + 0.5)
        parts.append(f'<text x="{cx:.1f}" y="{top + plot_h + 14}" text-anchor="end" '
                     f'transform="rotate(-30 {cx:.1f} {top + plot_h + 14})">{escape(label)}</text>')
    for index, name in enumerate(series):
        x = left + 10 + index * 90
        parts.append(f'<rect x="{x}" y="28" width="10" height="10" fill="{COLOURS[index % len(COLOURS)]}"/>')
        parts.append(f'<text x="{x + 14}" y="37">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
