"""The validation report: a JSON document for machines and an HTML page for people."""

from __future__ import annotations

from collections import Counter
from importlib import resources
from typing import Any

from jinja2 import Environment, select_autoescape

from mlfleet.contract.schema import Contract
from mlfleet.data.profile import ColumnPartial
from mlfleet.data.versions import Manifest

TOP_VALUES = 10


def _column_section(
    contract: Contract, partials: dict[str, ColumnPartial], failures: Counter[tuple[str, str]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in contract.columns:
        part = partials.get(col.name, ColumnPartial())
        entry: dict[str, Any] = {
            "type": col.type,
            "nullable": col.nullable,
            "rows": part.rows,
            "nulls": part.nulls,
            "null_fraction": round(part.nulls / part.rows, 6) if part.rows else 0.0,
            "failures": {
                code: n for (name, code), n in sorted(failures.items()) if name == col.name
            },
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


def report_document(
    manifest: Manifest,
    contract: Contract,
    partials: dict[str, ColumnPartial],
    failures: Counter[tuple[str, str]],
    examples: dict[tuple[str, str], list[dict[str, Any]]],
    duplicates: int,
) -> dict[str, Any]:
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
            {
                "column": column,
                "code": code,
                "count": count,
                "examples": examples.get((column, code), []),
            }
            for (column, code), count in sorted(failures.items(), key=lambda kv: -kv[1])
        ],
    }


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.4g}"
    return str(value)


def render_html(doc: dict[str, Any]) -> str:
    """A self-contained HTML page (no scripts, no external assets) for a report document."""
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    source = resources.files("mlfleet.data").joinpath("report.html.j2").read_text()
    template = env.from_string(source)
    return template.render(r=doc, pct=lambda x: f"{100 * (x or 0):.2f}%", fmt=_fmt)
