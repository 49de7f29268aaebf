"""A one-page HTML case report: image, overlay, probabilities, warnings, model version, disclaimer.

Self-contained (images inlined), so it can be saved, mailed or printed to PDF from any browser.
No patient identifiers: the report holds only what the loader exposes.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone

import numpy as np

from covidviz import CLASS_TITLES, CLASSES, DISCLAIMER
from covidviz.explain.overlay import downscale, gray_to_rgb
from covidviz.explain.reading import Reading
from covidviz.io.images import data_uri


def case_report_html(reading: Reading, overlay_rgb: np.ndarray, overlay_title: str, model_name: str,
                     model_version: str, verdict: tuple[str | None, str | None], created: datetime | None = None,
                     overlay_note: str = "") -> str:
    """``verdict``: ``(class, None)`` by the model's decision rule, or ``(None, reason)`` where it gives none
    (``Predictor.verdict``), so the report says what the page says. ``overlay_note``: what the page says
    under the map (its energy inside the lungs, the region read)."""
    created = created or datetime.now(timezone.utc)
    esc = html.escape
    label, abstained = verdict
    rows = "".join(
        f"<tr{' class=top' if c == label else ''}><td>{esc(CLASS_TITLES[c])}</td>"
        f"<td>{reading.probabilities[k]:.1%}</td></tr>" for k, c in enumerate(CLASSES))
    outcome = (f"<p>No class given: {esc(abstained)}. The probabilities below are not meaningful for this image.</p>"
               if abstained else f"<p>Model output: <b>{esc(CLASS_TITLES[label])}</b></p>")
    notes = list(reading.xray.warnings)
    if reading.ood_note:
        notes.insert(0, reading.ood_note)
    warnings_html = "".join(f"<li>{esc(w)}</li>" for w in notes) or "<li>None.</li>"
    info = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in reading.xray.info.items())
    original = data_uri(downscale(gray_to_rgb(reading.xray.pixels), 768))
    overlay = data_uri(downscale(overlay_rgb, 768))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>covidviz case report: {esc(reading.name)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:24px;color:#111;max-width:1000px}}
.disclaimer{{border:2px solid #b45309;background:#fffbeb;padding:8px 12px;margin:12px 0}}
.images{{display:flex;gap:16px}} .images figure{{margin:0;flex:1}} img{{width:100%;border:1px solid #ccc}}
table{{border-collapse:collapse}} td{{padding:2px 10px;border-bottom:1px solid #eee}} tr.top td{{font-weight:bold}}
</style></head><body>
<h1>covidviz case report</h1>
<p>File: <b>{esc(reading.name)}</b> · created {created:%Y-%m-%d %H:%M} UTC · model {esc(model_name)},
version <code>{esc(model_version)}</code></p>
<div class="disclaimer"><b>Decision support only.</b> {esc(DISCLAIMER)}</div>
<h2>Model output (calibrated probabilities)</h2>
{outcome}<table>{rows}</table>
<h2>Warnings</h2><ul>{warnings_html}</ul>
<div class="images">
<figure><img src="{original}" alt="original image"><figcaption>Original (unaltered)</figcaption></figure>
<figure><img src="{overlay}" alt="heatmap overlay"><figcaption>{esc(overlay_title)}{"<br>" + esc(overlay_note) if overlay_note else ""}</figcaption></figure>
</div>
<h2>Image</h2><table>{info}</table>
</body></html>
"""
