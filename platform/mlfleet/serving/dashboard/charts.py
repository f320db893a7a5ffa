"""Server-rendered SVG charts for the dashboard: no script, nothing fetched, values escaped.

Every function returns :class:`markupsafe.Markup`; whatever it writes into the SVG (labels,
names) goes through ``Markup.format``, which escapes its arguments.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

REFERENCE_COLOUR = "#7a8ba6"
CURRENT_COLOUR = "#e8833a"
LINE_COLOUR = "#2f6fb3"
DRIFT_COLOUR = "#c0392b"
WARNING_COLOUR = "#d4a017"
LABEL_CHARS = 14  # longer bin labels are cut on the axis (the tooltip has them whole)
AXIS_LABELS = 8  # at most this many bins are labelled on the axis (every one in the tooltip)


def _share(counts: Sequence[int]) -> list[float]:
    total = float(sum(counts))
    return [c / total if total else 0.0 for c in counts]


def _short(label: str) -> str:
    """An axis label: a numeric bin ``[a, b)`` by its lower edge, long names cut."""
    if label.startswith("[") and "," in label:
        label = label[1:].split(",")[0]
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def histogram_pair(
    labels: Sequence[str],
    reference: Sequence[int],
    current: Sequence[int] | None,
    *,
    title: str,
    width: int = 360,
    height: int = 170,
) -> Markup:
    """Reference and current shares per bin, side by side (current left out when None).

    Shares, not counts: the reference holds the training rows and the window far fewer.
    """
    ref = _share(reference)
    cur = _share(current) if current is not None else None
    bins = max(len(ref), 1)
    top, bottom, left = 16, 46, 22
    plot_h = height - top - bottom
    slot = (width - 2 * left) / bins
    peak = max([*ref, *(cur or []), 1e-9])
    parts = [
        Markup(
            '<svg class="hist" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            'viewBox="0 0 {w} {h}" role="img" aria-label="{t}"><title>{t}</title>'
        ).format(w=width, h=height, t=title)
    ]
    bar = slot * (0.42 if cur is not None else 0.8)
    every = -(-bins // AXIS_LABELS)  # label every n-th bin, so that labels never overlap
    for i, label in enumerate(labels[:bins]):
        x = left + i * slot + slot * 0.1
        for j, (shares, colour) in enumerate(((ref, REFERENCE_COLOUR), (cur, CURRENT_COLOUR))):
            if shares is None or i >= len(shares):
                continue
            h = plot_h * shares[i] / peak
            which = "reference" if j == 0 else "current"
            parts.append(
                Markup(
                    '<rect class="{cls}" x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" '
                    'height="{bh:.1f}" fill="{c}"><title>{label}: {which} {pct:.1f}%</title></rect>'
                ).format(
                    cls=which,
                    x=x + j * bar,
                    y=top + plot_h - h,
                    bw=max(bar - 1, 1),
                    bh=h,
                    c=colour,
                    label=label,
                    which=which,
                    pct=100 * shares[i],
                )
            )
        if i % every and i != bins - 1:
            continue
        cx = left + (i + 0.5) * slot
        parts.append(
            Markup(
                '<text x="{x:.1f}" y="{y}" font-size="9" text-anchor="end" '
                'transform="rotate(-35 {x:.1f} {y})">{label}</text>'
            ).format(x=cx, y=height - bottom + 12, label=_short(label))
        )
    parts.append(
        Markup('<line x1="{l}" y1="{y}" x2="{r}" y2="{y}" stroke="#999"/>').format(
            l=left, r=width - left, y=top + plot_h
        )
    )
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def statistic_line(
    points: Sequence[tuple[float, float | None]],
    *,
    drift: float | None,
    warning: float | None,
    title: str,
    width: int = 360,
    height: int = 120,
) -> Markup:
    """A statistic over time (``(unix time, value)``), with its drift and warning thresholds
    as dashed lines; evaluations without a value leave a gap."""
    known = [(t, v) for t, v in points if v is not None]
    top, bottom, left, right = 10, 18, 34, 8
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [
        Markup(
            '<svg class="trend" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            'viewBox="0 0 {w} {h}" role="img" aria-label="{t}"><title>{t}</title>'
        ).format(w=width, h=height, t=title)
    ]
    if not known:
        parts.append(
            Markup(
                '<text x="{x}" y="{y}" font-size="11" fill="#777">no evaluation yet</text>'
            ).format(x=left, y=top + plot_h / 2)
        )
        parts.append(Markup("</svg>"))
        return Markup("").join(parts)
    thresholds = [v for v in (drift, warning) if v is not None]
    high = max([v for _, v in known] + thresholds) * 1.1 or 1.0
    t0, t1 = known[0][0], known[-1][0]
    span = (t1 - t0) or 1.0

    def x_of(t: float) -> float:
        return left + plot_w * ((t - t0) / span if t1 > t0 else 0.5)

    def y_of(v: float) -> float:
        return top + plot_h * (1 - v / high)

    for value, colour, name in ((drift, DRIFT_COLOUR, "drift"), (warning, WARNING_COLOUR, "warn")):
        if value is None:
            continue
        parts.append(
            Markup(
                '<line x1="{l}" x2="{r}" y1="{y:.1f}" y2="{y:.1f}" stroke="{c}" '
                'stroke-dasharray="4 3"><title>{n} threshold {v:.4g}</title></line>'
            ).format(l=left, r=left + plot_w, y=y_of(value), c=colour, n=name, v=value)
        )
    segment: list[str] = []
    segments: list[list[str]] = []
    for t, v in points:
        if v is None:
            if segment:
                segments.append(segment)
            segment = []
            continue
        segment.append(f"{x_of(t):.1f},{y_of(v):.1f}")
    if segment:
        segments.append(segment)
    for seg in segments:
        parts.append(
            Markup('<polyline fill="none" stroke="{c}" stroke-width="1.6" points="{p}"/>').format(
                c=LINE_COLOUR, p=" ".join(seg)
            )
        )
    last_t, last_v = known[-1]
    parts.append(
        Markup(
            '<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{c}"><title>latest {v:.4g}</title>'
            "</circle>"
        ).format(x=x_of(last_t), y=y_of(last_v), c=LINE_COLOUR, v=last_v)
    )
    parts.append(
        Markup(
            '<text x="2" y="{yt}" font-size="9">{hi:.3g}</text>'
            '<text x="2" y="{yb}" font-size="9">0</text>'
            '<line x1="{l}" x2="{r}" y1="{yb0}" y2="{yb0}" stroke="#999"/>'
        ).format(yt=top + 8, hi=high, yb=top + plot_h, l=left, r=left + plot_w, yb0=top + plot_h)
    )
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


__all__ = ["histogram_pair", "statistic_line"]
