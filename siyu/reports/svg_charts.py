"""Small server-side SVG charts for the HTML report: no JavaScript, no network, nothing to
load — the page is one self-contained file that any browser (or a mail client) shows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#2f6fde", "#e07b24", "#2a9d5c", "#c23b4e", "#7b52c7", "#888888", "#17a2b8")
_FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" {_FONT}><title>{escape(title)}</title>'
        + "".join(body)
        + "</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {extra}>{escape(text)}</text>'


def bar_chart(title: str, bars: Sequence[tuple[str, float]], width: int = 640) -> str:
    """Horizontal bars with their values (the funnel)."""
    label_w, row_h = 170, 26
    height = row_h * len(bars) + 30
    top = max((v for _, v in bars), default=0) or 1
    body = [_text(0, 16, title, extra='font-weight="bold"')]
    for i, (label, value) in enumerate(bars):
        y = 26 + i * row_h
        w = (width - label_w - 70) * value / top
        body.append(_text(label_w - 8, y + 15, label, "end"))
        body.append(
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" '
            f'fill="{PALETTE[0]}"><title>{escape(label)}: {value:g}</title></rect>'
        )
        body.append(_text(label_w + w + 6, y + 15, f"{value:g}"))
    return _svg(width, height, body, title)


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    percent: bool = False,
    width: int = 640,
    height: int = 240,
) -> str:
    """One line per series over the x labels (days), with a legend."""
    left, right, top, bottom = 50, 20, 30, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((v for values in series.values() for v in values), default=0) or 1
    n = max(len(x_labels), 1)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h * (1 - v / peak)

    body = [_text(0, 16, title, extra='font-weight="bold"')]
    for tick in range(5):
        value = peak * tick / 4
        shown = f"{value:.0%}" if percent else f"{value:.0f}"
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            'stroke="#ddd"/>'
        )
        body.append(_text(left - 6, y(value) + 4, shown, "end"))
    step = max(1, n // 8)
    for i in range(0, n, step):
        body.append(_text(x(i), height - bottom + 16, x_labels[i], "middle"))
    for k, (name, values) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        body.append(
            f'<polyline class="series" fill="none" stroke="{color}" stroke-width="2" '
            f'points="{points}"><title>{escape(name)}</title></polyline>'
        )
        lx = left + k * 130
        body.append(
            f'<rect x="{lx}" y="{height - 18}" width="12" height="12" fill="{color}"/>'
            + _text(lx + 16, height - 8, name)
        )
    return _svg(width, height, body, title)


def interval_chart(
    title: str, rows: Sequence[tuple[str, float, float, float]], width: int = 640
) -> str:
    """Points with 95 % intervals on a shared axis (differences in conversion), zero marked."""
    label_w, row_h = 220, 30
    height = row_h * len(rows) + 50
    lo = min([0.0, *(r[2] for r in rows)])
    hi = max([0.0, *(r[3] for r in rows)])
    span = (hi - lo) or 1
    plot_w = width - label_w - 20

    def x(v: float) -> float:
        return label_w + plot_w * (v - lo) / span

    body = [_text(0, 16, title, extra='font-weight="bold"')]
    body.append(
        f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="26" y2="{height - 20}" stroke="#999" '
        'stroke-dasharray="4 3"/>'
    )
    for i, (label, point, low, high) in enumerate(rows):
        y = 40 + i * row_h
        color = PALETTE[2] if low > 0 else PALETTE[3] if high < 0 else PALETTE[5]
        body.append(_text(label_w - 8, y + 4, label, "end"))
        body.append(
            f'<line class="ci" x1="{x(low):.1f}" x2="{x(high):.1f}" y1="{y}" y2="{y}" '
            f'stroke="{color}" stroke-width="3"/>'
            f'<circle cx="{x(point):.1f}" cy="{y}" r="5" fill="{color}">'
            f"<title>{escape(label)}: {point:+.2%} ({low:+.2%} to {high:+.2%})</title></circle>"
        )
    body.append(_text(x(lo), height - 4, f"{lo:+.1%}"))
    body.append(_text(x(hi), height - 4, f"{hi:+.1%}", "end"))
    return _svg(width, height, body, title)
