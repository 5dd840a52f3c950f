"""Plain-text formatting shared by the report, `benchbed compare` and the Markdown/JSON outputs (below both).

Numbers are shown with the digits their CI supports; a missing value is always "—", never a made-up number.
"""

from __future__ import annotations

import json
import math
import re

import yaml

from benchbed.stats import canonical_params

LONG_VALUE = 120  # env values longer than this (or multi-line) fold into a <details>
MAX_EXTRA_DIGITS = 4
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def md(text: object) -> str:
    """Markdown-inert text, the one escaper of every Markdown benchbed writes (report, `compare --markdown`):
    HTML metacharacters as entities, Markdown punctuation backslash-escaped, one line."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s.replace("\r", " ").replace("\n", " "))


# ── formatting (Jinja filters) ─────────────────────────────────────────────────────────────────────────────
def finite(x: object) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def fmt_num(x: object, width: object = None, sign: bool = False) -> str:
    """3 significant digits, or more when `width` (a CI's width) needs them to stay visible; '—' if missing.

    Plain notation between 1e-3 and 1e6, scientific outside.
    """
    f = finite(x)
    if f is None:
        return "—"
    if f == 0:
        return "0"
    plus = "+" if sign and f > 0 else ""
    a = abs(f)
    decimals = 2 - math.floor(math.log10(a))
    w = finite(width)
    if w is not None and w > 0:  # show the CI's width to 2 significant digits, at most 4 digits more than usual
        decimals = max(decimals, min(1 - math.floor(math.log10(w)), decimals + MAX_EXTRA_DIGITS))
    if a >= 1e6 or a < 1e-3:
        return f"{plus}{f:.{decimals + math.floor(math.log10(a)) + 1}g}"
    return f"{plus}{round(f, decimals):,.{max(decimals, 0)}f}"


def fmt_pct(x: object) -> str:
    f = finite(x)
    return "—" if f is None else f"{fmt_num(f, sign=True)}%"


def fmt_ci(low: object, high: object) -> str:
    lo, hi = finite(low), finite(high)
    if lo is None or hi is None:
        return "—"
    return f"[{fmt_num(lo, hi - lo)}, {fmt_num(hi, hi - lo)}]"


def ci_width(low: object, high: object) -> float | None:
    lo, hi = finite(low), finite(high)
    return None if lo is None or hi is None else hi - lo


def params_label(params: object) -> str:
    """{"n": 256, "dtype": "f4"} ▸ 'n=256, dtype=f4' — the canonical JSON is precise but noisy to read."""
    try:
        obj = json.loads(canonical_params(params))
    except json.JSONDecodeError:
        return str(params)
    if not isinstance(obj, dict):
        return str(params)
    if not obj:
        return "(default params)"
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in obj.items())


def flatten(data: object, prefix: str = "") -> dict[str, str]:
    """Nested dicts/lists ▸ {'gpus.0.name': 'H100', ...}; scalars as JSON except plain strings."""
    out: dict[str, str] = {}
    if isinstance(data, dict):
        if not data and prefix:
            out[prefix] = "{}"
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(data, list):
        if all(not isinstance(v, dict | list) for v in data):
            out[prefix] = ", ".join(v if isinstance(v, str) else json.dumps(v) for v in data) if data else "[]"
        else:
            for i, v in enumerate(data):
                out.update(flatten(v, f"{prefix}.{i}"))
    else:
        out[prefix] = data if isinstance(data, str) else json.dumps(data, default=str)
    return out


def suite_doc(text: object) -> dict[str, object]:
    """The suite YAML recorded in run.json, parsed ({} when absent or unreadable: it is only shown, never run)."""
    if not isinstance(text, str):
        return {}
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return {str(k): v for k, v in doc.items()} if isinstance(doc, dict) else {}


def thresholds_from_text(text: object) -> dict[str, float]:
    """`thresholds:` from the suite text recorded in run.json (older runs and suites have none)."""
    raw = suite_doc(text).get("thresholds")
    if not isinstance(raw, dict):
        return {}
    return {str(k): float(v) for k, v in raw.items() if isinstance(v, int | float)}
