"""The validation report: a JSON document for machines and an HTML page for people."""

from __future__ import annotations

from collections import Counter
from typing import Any

from jinja2 import Environment, select_autoescape

from mlfleet.data.contract import Contract
from mlfleet.data.profile import ColumnPartial
from mlfleet.data.versions import Manifest

TOP_VALUES = 10


def _column_section(contract: Contract, partials: dict[str, ColumnPartial],
                    failures: Counter[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in contract.columns:
        part = partials.get(col.name, ColumnPartial())
        entry: dict[str, Any] = {
            "type": col.type,
            "nullable": col.nullable,
            "rows": part.rows,
            "nulls": part.nulls,
            "null_fraction": round(part.nulls / part.rows, 6) if part.rows else 0.0,
            "failures": {code: n for (name, code), n in sorted(failures.items()) if name == col.name},
        }
        if col.type in ("int", "float", "datetime"):
            entry["min"], entry["max"] = part.min, part.max
        if col.type in ("int", "float") and part.rows > part.nulls:
            entry["mean"] = part.total / (part.rows - part.nulls)
        if part.categories is not None:
            entry["top_values"] = dict(part.categories.most_common(TOP_VALUES))
            entry["distinct"] = len(part.categories)
        out[col.name] = entry
    return out


def report_document(manifest: Manifest, contract: Contract,
                    partials: dict[str, ColumnPartial],
                    failures: Counter[tuple[str, str]],
                    examples: dict[tuple[str, str], list[dict[str, Any]]],
                    duplicates: int) -> dict[str, Any]:
    """``report.json``: summary, per-column statistics of curated data, failures per rule."""
    return {
        "name": manifest.name,
        "version": manifest.version,
        "status": manifest.status,
        "created_at": manifest.created_at,
        "rows_in": manifest.rows_in,
        "rows_valid": manifest.rows_valid,
        "rows_quarantined": manifest.rows_quarantined,
        "quarantine_fraction": manifest.quarantine_fraction,
        "max_quarantine_fraction": manifest.max_quarantine_fraction,
        "duplicates": duplicates,
        "reasons": manifest.reasons,
        "sources": [s.model_dump() for s in manifest.sources],
        "columns": _column_section(contract, partials, failures),
        "failures": [
            {"column": column, "code": code, "count": count,
             "examples": examples.get((column, code), [])}
            for (column, code), count in sorted(failures.items(), key=lambda kv: -kv[1])
        ],
    }


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ r.name }} {{ r.version }} — validation report</title>
<style>
 body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:70rem;color:#1d2330;padding:0 1rem}
 h1{font-size:1.5rem;margin-bottom:.2rem} h2{margin-top:2rem;font-size:1.15rem}
 .muted{color:#667} table{border-collapse:collapse;width:100%;margin:.5rem 0}
 th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #e3e6ee;vertical-align:top}
 th{background:#f5f6fa;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
 .badge{display:inline-block;padding:.1rem .55rem;border-radius:.7rem;font-weight:600;color:#fff}
 .passed{background:#1f8a4c}.failed{background:#c0392b}
 .cards{display:flex;gap:1rem;flex-wrap:wrap}.card{border:1px solid #e3e6ee;border-radius:.5rem;padding:.7rem 1rem;min-width:9rem}
 .card b{display:block;font-size:1.35rem} code{background:#f5f6fa;padding:0 .25rem;border-radius:.2rem}
</style></head><body>
<h1>{{ r.name }} <span class="muted">version {{ r.version }}</span>
 <span class="badge {{ r.status }}">{{ r.status }}</span></h1>
<div class="muted">created {{ r.created_at }} · quarantine limit {{ pct(r.max_quarantine_fraction) }}</div>
<div class="cards" style="margin-top:1rem">
 <div class="card"><b>{{ "{:,}".format(r.rows_in) }}</b>rows in</div>
 <div class="card"><b>{{ "{:,}".format(r.rows_valid) }}</b>valid</div>
 <div class="card"><b>{{ "{:,}".format(r.rows_quarantined) }}</b>quarantined ({{ pct(r.quarantine_fraction) }})</div>
 <div class="card"><b>{{ "{:,}".format(r.duplicates) }}</b>duplicates</div>
</div>
<h2>Sources</h2>
<table><tr><th>source</th><th>kind</th><th>rows</th><th>valid</th><th>quarantined</th><th>sha256</th></tr>
{% for s in r.sources %}<tr><td>{{ s.uri }}</td><td>{{ s.kind }}</td><td class="num">{{ s.rows }}</td>
<td class="num">{{ s.rows_valid }}</td><td class="num">{{ s.rows_quarantined }}</td><td><code>{{ s.sha256[:12] }}</code></td></tr>{% endfor %}
</table>
<h2>Why rows were quarantined</h2>
{% if r.failures %}<table><tr><th>column</th><th>rule</th><th>rows</th><th>examples (source · row · raw value)</th></tr>
{% for f in r.failures %}<tr><td>{{ f.column }}</td><td><code>{{ f.code }}</code></td><td class="num">{{ f.count }}</td>
<td>{% for e in f.examples %}<div>{{ e.source.split('/')[-1] }} · row {{ e.row }} · <code>{{ e.value if e.value is not none else "∅" }}</code></div>{% endfor %}</td></tr>{% endfor %}
</table>{% else %}<p>No row was rejected.</p>{% endif %}
<h2>Columns (curated data)</h2>
<table><tr><th>column</th><th>type</th><th>nulls</th><th>min</th><th>max</th><th>mean</th><th>top values</th></tr>
{% for name, c in r.columns.items() %}<tr><td>{{ name }}</td><td>{{ c.type }}{% if c.nullable %}?{% endif %}</td>
<td class="num">{{ c.nulls }} ({{ pct(c.null_fraction) }})</td><td class="num">{{ fmt(c.get('min')) }}</td>
<td class="num">{{ fmt(c.get('max')) }}</td><td class="num">{{ fmt(c.get('mean')) }}</td>
<td>{% for k, v in (c.get('top_values') or {}).items() %}<code>{{ k }}</code> {{ v }}{% if not loop.last %}, {% endif %}{% endfor %}</td></tr>{% endfor %}
</table>
</body></html>
"""


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.4g}"
    return str(value)


def render_html(doc: dict[str, Any]) -> str:
    """A self-contained HTML page (no scripts, no external assets) for a report document."""
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = env.from_string(_TEMPLATE)
    return template.render(r=doc, pct=lambda x: f"{100 * (x or 0):.2f}%", fmt=_fmt)
