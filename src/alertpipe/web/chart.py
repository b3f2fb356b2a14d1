"""The throughput chart: an inline SVG drawn on the server (no script, no chart library).

One column per minute of the last hour: messages received as a bar, deliveries as a line, failed
attempts as red marks. Each minute has a ``<title>``, so hovering shows its numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from markupsafe import Markup, escape

from alertpipe.store.base import RatePoint

WIDTH, HEIGHT, PAD = 600, 120, 18
MINUTES = 60

__all__ = ["throughput_svg"]


def throughput_svg(points: Sequence[RatePoint], now: datetime, label: str = "") -> Markup:
    """The last ``MINUTES`` minutes before ``now`` as an SVG element (safe markup)."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES - 1)
    by_minute = {p.minute: p for p in points}
    minutes = [start + timedelta(minutes=i) for i in range(MINUTES)]
    rows = [by_minute.get(m) for m in minutes]
    peak = max([1] + [max(p.received, p.delivered, p.failed) for p in rows if p is not None])
    plot_h = HEIGHT - 2 * PAD
    step = (WIDTH - 2 * PAD) / MINUTES

    def y(value: int) -> float:
        return HEIGHT - PAD - plot_h * value / peak

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
             f'height="{HEIGHT}" role="img" aria-label="{escape(label)}">',
             f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
             'stroke="#999" stroke-width="1"/>',
             f'<text x="{PAD}" y="{PAD - 5}" font-size="10" fill="#555">{peak}/min</text>',
             f'<text x="{PAD}" y="{HEIGHT - 4}" font-size="10" fill="#555">−60 min</text>',
             f'<text x="{WIDTH - PAD}" y="{HEIGHT - 4}" font-size="10" fill="#555" '
             'text-anchor="end">now</text>']
    line = []
    for i, (minute, p) in enumerate(zip(minutes, rows, strict=True)):
        x = PAD + i * step
        received = p.received if p else 0
        delivered = p.delivered if p else 0
        failed = p.failed if p else 0
        if received:
            parts.append(f'<rect x="{x + 1:.1f}" y="{y(received):.1f}" width="{step - 2:.1f}" '
                         f'height="{HEIGHT - PAD - y(received):.1f}" fill="#8bb8e8"/>')
        if failed:
            parts.append(f'<rect x="{x + 1:.1f}" y="{y(failed) - 1:.1f}" width="{step - 2:.1f}" '
                         f'height="3" fill="#d33"/>')
        line.append(f"{x + step / 2:.1f},{y(delivered):.1f}")
        parts.append(f'<rect x="{x:.1f}" y="{PAD}" width="{step:.1f}" height="{plot_h}" '
                     f'fill="transparent"><title>{minute:%H:%M} UTC: {received} received, '
                     f'{delivered} delivered, {failed} failed</title></rect>')
    parts.append(f'<polyline points="{" ".join(line)}" fill="none" stroke="#2a7d2a" '
                 'stroke-width="1.5"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
