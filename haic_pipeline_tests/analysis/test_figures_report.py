"""The figures and the study report, rendered on the demo data and inspected: sizes, texts
(legend, number at risk, p-value, provenance), numbers at risk, determinism, no identifiers."""

from __future__ import annotations

import io
import re
import warnings

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from haic_pipeline.analysis import BEYOND_FIGURES, build_figures, build_report, render_figure
from haic_pipeline.analysis import agg, figures
from haic_pipeline.analysis import build as build_module
from haic_pipeline.analysis.figures import figure_texts
from haic_pipeline.analysis.render import draw_figure

from .conftest import identifiers


def _summary(con):
    return con.execute("SELECT * FROM analysis.km_summary").df()


def test_km_figure_has_legend_risk_table_p_value_and_provenance(demo):
    con, _, _ = demo
    fig = render_figure(con, "km_os")
    texts = figure_texts(fig)
    joined = "\n".join(texts)
    s = _summary(con)
    for g, label in (("first_line", "First-line HAIC"), ("post_ate_beva", "Post-ate-beva HAIC")):
        n = int(s[(s.endpoint == "OS") & (s.group == g)].n.iloc[0])
        assert any(t.startswith(f"{label} (n = {n}): median ") for t in texts), texts
    assert "Number at risk" in texts
    p = con.execute("SELECT p_value FROM analysis.survival_tests WHERE endpoint = 'OS' AND test = 'logrank'").fetchall()[0][0]
    assert f"Log-rank, nominal p = {p:.3f}" in joined
    cutoff, eid = con.execute("SELECT data_cutoff::VARCHAR, extract_id FROM analysis.km_curves LIMIT 1").fetchall()[0]
    assert f"data cutoff {cutoff}" in joined and eid in joined and "6 drops" in joined
    # the number-at-risk row starts with each group's n at time 0, under the x tick 0
    ax, risk = fig.axes
    assert list(risk.get_xticks()) == list(ax.get_xticks()) and risk.get_xlim() == ax.get_xlim()
    at_zero = sorted(int(t.get_text()) for t in risk.texts if t.get_position()[0] == 0)
    assert at_zero == sorted(int(s[(s.endpoint == "OS") & (s.group == g)].n.iloc[0])
                             for g in ("first_line", "post_ate_beva"))
    # dotted median lines exist for the groups whose median is reached
    dotted = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    reached = s[(s.endpoint == "OS") & (s.group != "overall") & s.median_months.notna()]
    assert len(dotted) == 2 * len(reached)


def test_forest_figure_lists_both_models_and_excluded(demo):
    con, _, _ = demo
    fig = render_figure(con, "forest_pfs")
    texts = figure_texts(fig)
    joined = "\n".join(texts)
    assert any(t.startswith("Univariable") for t in texts)
    assert any(t.startswith("Multivariable (n = ") for t in texts)
    assert "Post-ate-beva vs first-line" in texts and "ECOG 0 vs \u2265 1" in texts
    assert "HR (95% CI)" in texts and "data cutoff" in joined


def test_saved_figures_are_sane_pngs_and_deterministic(demo, tmp_path, monkeypatch):
    con, _, _ = demo
    first = build_figures(con, tmp_path)
    for name, saved in first.items():
        with Image.open(saved.png) as im:
            assert im.width > 800 and im.height > 500, name
            # not blank: plenty of distinct colours
            assert len(im.convert("RGB").getcolors(maxcolors=1_000_000)) > 50
        svg = saved.svg.read_text()
        assert "<dc:date>" not in svg
        assert saved.preview_png_base64 and len(saved.preview_png_base64) < 200_000
    png_before = {n: s.png.read_bytes() for n, s in first.items()}
    svg_before = {n: s.svg.read_bytes() for n, s in first.items()}
    # the same inputs: nothing is drawn again, and the stored preview is what the UI gets
    with monkeypatch.context() as m:
        m.setattr(build_module, "draw_figure", lambda inputs: pytest.fail("an unchanged figure was drawn again"))
        unchanged = build_figures(con, tmp_path)
    for n, s in unchanged.items():
        assert s.preview_png_base64 == first[n].preview_png_base64, n
        assert (s.width_px, s.height_px) == (first[n].width_px, first[n].height_px), n
    # another folder, the same inputs: the figures drawn in this process are written, not drawn again
    with monkeypatch.context() as m:
        m.setattr(build_module, "draw_figure", lambda inputs: pytest.fail("a figure drawn before was drawn again"))
        elsewhere = build_figures(con, tmp_path / "elsewhere")
    for n, s in elsewhere.items():
        assert s.png.read_bytes() == png_before[n] and s.svg.read_bytes() == svg_before[n], n
        assert s.preview_png_base64 == first[n].preview_png_base64, n
        assert (tmp_path / "elsewhere" / "figures" / f"{n}.inputs").read_text() == \
            (tmp_path / "figures" / f"{n}.inputs").read_text(), n
    # force a redraw (nothing on disk, nothing kept in the process): identical bytes
    for n in first:
        (tmp_path / "figures" / f"{n}.inputs").unlink()
    figures.forget_drawn()
    drawn = []
    with monkeypatch.context() as m:
        m.setattr(build_module, "draw_figure", lambda inputs: drawn.append(inputs) or draw_figure(inputs))
        again = build_figures(con, tmp_path)
    assert len(drawn) == len(first)
    for n, s in again.items():
        assert s.png.read_bytes() == png_before[n], n
        assert s.svg.read_bytes() == svg_before[n], n
        assert s.preview_png_base64 == first[n].preview_png_base64, n


@pytest.mark.parametrize("dpi", [figures.DPI, 72, 97])
def test_a_figure_drawn_once_is_the_png_matplotlib_writes(demo, dpi):
    """The PNG and the UI preview come from one Agg drawing; the PNG is byte for byte what
    matplotlib's own savefig writes, at the project's dpi and at others (odd sizes included)."""
    con, _, _ = demo
    for name in ("km_os", "love"):
        fig = render_figure(con, name)
        expected = io.BytesIO()
        fig.savefig(expected, format="png", dpi=dpi, metadata={"Software": None}, facecolor="white")
        image = figures.rendered(fig, dpi)
        assert figures.encoded_png(image, dpi) == figures.png_bytes(fig, dpi) == expected.getvalue(), (name, dpi)
        with Image.open(io.BytesIO(figures.preview_png(image))) as preview:
            assert preview.width == figures.PREVIEW_WIDTH and preview.mode == "P"
            assert abs(preview.height / preview.width - image.height / image.width) < 0.01


def _odd_text() -> Figure:
    """Text the study's figures do not draw: rotated, not antialiased, mathtext (whose fraction bar
    and root are drawn as boxes), and glyphs only the last-resort font has."""
    fig = Figure(figsize=(4, 2), dpi=figures.DPI)
    agg.Canvas(fig)
    fig.text(0.05, 0.75, "rotated 30\u00b0", rotation=30)
    fig.text(0.05, 0.45, "not antialiased", antialiased=False, fontsize=12)
    fig.text(0.55, 0.5, r"$\frac{a}{b} + \sqrt{x_1}$", fontsize=14)
    fig.text(0.05, 0.15, "fallback \u0e01\u4e2d", fontweight="bold")
    return fig


def test_the_figures_canvas_draws_the_pixels_of_matplotlibs_own_agg(demo):
    """agg.Canvas (a glyph transform built once per text, the fonts read from memory) draws what
    matplotlib's FigureCanvasAgg draws, pixel for pixel: every figure of the study, and the text
    cases they do not have."""
    con, _, _ = demo
    drawn = {name: render_figure(con, name) for name in build_module.FIGURES}
    drawn["odd text"] = _odd_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the glyphs missing from DejaVu Sans, both times
        for name, fig in drawn.items():
            assert isinstance(fig.canvas, agg.Canvas), name
            ours = figures.rendered(fig).tobytes()
            FigureCanvasAgg(fig)
            theirs = io.BytesIO()
            fig.savefig(theirs, format="rgba", dpi=figures.DPI, facecolor="white")
            assert ours == theirs.getvalue(), name


def test_report_has_tables_1_to_4_figures_and_no_identifiers(demo, tmp_path):
    con, _, inbox = demo
    build_figures(con, tmp_path)
    result = build_report(con, tmp_path)
    html = (tmp_path / "study_report.html").read_text()
    md = (tmp_path / "study_report.md").read_text()
    for text in (html, md):
        for title in ("Table 1. Baseline characteristics", "Table 2. Best overall response",
                      "Table 3. Cox regression for overall survival",
                      "Table 4. Cox regression for progression-free survival", "Survival outcomes",
                      "Study population (CONSORT)", "refresh_history"):
            assert title in text
        assert result.provenance.extract_id in text and f"data cutoff {result.provenance.data_cutoff}" in text
    # the monitoring figure, the paper's four and the four beyond the paper (Love plot, propensity
    # scores, IPTW KM OS / PFS), all PNG
    assert html.count('src="data:image/png;base64,') == 9 and "image/svg+xml" not in html
    assert all(f"figures/{n}.png" in md
               for n in ("monitor", "km_os", "km_pfs", "forest_os", "forest_pfs", *BEYOND_FIGURES))
    keys = {k for (k,) in con.execute("SELECT patient_key FROM staging.cohort").fetchall()}
    ids = identifiers(inbox)
    assert ids["patient_id"] and ids["patient_name"]
    svgs = " ".join((tmp_path / "figures" / f"{n}.svg").read_text() for n in ("km_os", "forest_os"))
    for text in (html, md, svgs):
        words = set(re.findall(r"[0-9a-f]{16}", text))
        assert not (words & keys), "a patient_key in the report"
        for kind in ("patient_id", "patient_name", "birth_date"):
            leaked = [v for v in ids[kind] if len(v) >= 6 and v in text]
            assert not leaked, f"{kind} in the report: {len(leaked)} values"


def test_report_numbers_come_from_the_tables(demo, tmp_path):
    con, _, _ = demo
    build_report(con, tmp_path)
    md = (tmp_path / "study_report.md").read_text()
    s = _summary(con)
    r = s[(s.endpoint == "PFS") & (s.group == "post_ate_beva")].iloc[0]
    from haic_pipeline.stats import format_median_ci

    assert format_median_ci(r.median_months, r.median_lower, r.median_upper) in md
    multi = con.execute("SELECT hr FROM analysis.cox_models WHERE endpoint = 'OS' AND model = 'multivariable' "
                        "AND term = 'group'").fetchall()[0][0]
    assert f"{multi:.3f}" in md
    assert pd.notna(multi)
