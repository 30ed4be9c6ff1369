"""The Agg canvas of the study's figures: matplotlib's own Agg drawing, pixel for pixel, with less
work per glyph.

Most of a figure's drawing is its text (titles, axis labels, the numbers at risk, footnotes),
and matplotlib's Agg text (3.11) draws each glyph on its own. Two costs of that are the same for
every glyph of a text, and `Canvas` pays them once:

- the glyph transform: a rotation matrix built in NumPy, four small-array operations per glyph;
  `_Renderer` builds it once per text (per slant and extent, which mathtext may vary);
- reading the font: FreeType reads the font file through a Python file object, a seek and a read
  (two system calls through the interpreter) each time it loads a glyph, several hundred thousand
  per refresh. `_Renderer` opens the same font files from their bytes, read once per process.

The fonts are those matplotlib picks itself (`fontManager._find_fonts_by_props`), with the
fallback and last-resort fonts `font_manager.get_font` adds, one set per thread as there.
A font opened from memory names no file (its `fname` is the stream), which only PDF and
PostScript output would need: the figures are PNG (this canvas) and SVG (matplotlib's own).
`test_figures_report.py` draws every figure with this canvas and with matplotlib's, and compares
the pixels.
"""

from __future__ import annotations

import functools
import io
import math
import os
import threading

import matplotlib as mpl
import numpy as np
from matplotlib import cbook, ft2font
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg, get_hinting_flag
from matplotlib.font_manager import _cached_realpath, fontManager
from matplotlib.ft2font import RenderMode

LAST_RESORT = ("fonts", "ttf", "LastResortHE-Regular.ttf")


@functools.cache
def _font_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _open(path: str, index: int, kerning_factor: float, **kwargs) -> ft2font.FT2Font:
    return ft2font.FT2Font(io.BytesIO(_font_file(path)), face_index=index, _kerning_factor=kerning_factor, **kwargs)


@functools.lru_cache(64)
def _fonts(paths: tuple[tuple[str, int], ...], kerning_factor: float, thread_id: int,
           last_resort: bool) -> ft2font.FT2Font:
    """`font_manager._get_font` with every font opened from memory: the first of `paths` with the
    others, then the last-resort font, as its fallbacks."""
    (first, first_index), *rest = paths
    fallbacks = [_open(path, index, kerning_factor) for path, index in rest]
    last_path = _cached_realpath(cbook._get_data_path(*LAST_RESORT))
    last_index = paths.index((last_path, 0)) if (last_path, 0) in paths else -1
    if last_index < 0 and last_resort:
        fallbacks.append(_open(last_path, 0, kerning_factor, _warn_if_used=True))
        last_index = len(fallbacks)
    font = _open(first, first_index, kerning_factor, _fallback_list=fallbacks)
    # the last-resort font's glyphs are in its first charmap, not the Unicode one FreeType picks
    if last_index == 0:
        font.set_charmap(0)
    elif last_index > 0:
        fallbacks[last_index - 1].set_charmap(0)
    return font


os.register_at_fork(after_in_child=_fonts.cache_clear)   # FreeType objects are not shared across a fork


def font_for(prop) -> ft2font.FT2Font:
    """The font `font_manager.get_font` gives for the font properties `prop`, read from memory."""
    paths = tuple((_cached_realpath(p.path), p.face_index) for p in fontManager._find_fonts_by_props(prop))
    font = _fonts(paths, mpl.rcParams["text.kerning_factor"], threading.get_ident(),
                  mpl.rcParams["font.enable_last_resort"])
    font._set_transform([[0x10000, 0], [0, 0x10000]], [0, 0])
    return font


class _Renderer(RendererAgg):
    def _prepare_font(self, font_prop):
        font = font_for(font_prop)
        font.clear()
        font.set_size(font_prop.get_size_in_points(), self.dpi)
        return font

    def _draw_text_glyphs_and_boxes(self, gc, x, y, angle, glyphs, boxes):
        """RendererAgg's, with each glyph transform built once per (slant, extent) and each font's
        size set once per run of its glyphs; the boxes (mathtext's rules) drawn by RendererAgg."""
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        flags = get_hinting_flag()
        antialiased = gc.get_antialiased()
        mode = RenderMode.NORMAL if antialiased else RenderMode.MONO
        height = self.height
        matrices: dict[tuple[float, float], np.ndarray] = {}
        sized = None
        for font, size, glyph_index, slant, extend, dx, dy in glyphs:   # dy is upwards
            if sized != (font, size):
                font.set_size(size, self.dpi)
                sized = (font, size)
            matrix = matrices.get((slant, extend))
            if matrix is None:
                matrix = matrices[slant, extend] = (
                    0x10000 * np.array([[cos, -sin], [sin, cos]]) @ [[extend, extend * slant], [0, 1]]
                ).round().astype(int)
            font._set_transform(matrix, [round(0x40 * (x + dx * cos - dy * sin)),
                                         round(0x40 * (height - y + dx * sin + dy * cos))])   # FreeType's y is upwards
            bitmap = font._render_glyph(glyph_index, flags, mode)
            buffer = bitmap.buffer
            if not antialiased:
                buffer *= 0xff
            self._renderer.draw_text_image(buffer, bitmap.left, int(height) - bitmap.top + buffer.shape[0], 0, gc)
        super()._draw_text_glyphs_and_boxes(gc, x, y, angle, (), boxes)


class Canvas(FigureCanvasAgg):
    """FigureCanvasAgg drawing with `_Renderer` (module docstring): `Canvas(fig)` as
    `FigureCanvasAgg(fig)`; `savefig` and `print_*` draw the same pixels."""

    def get_renderer(self):
        w, h = self.get_width_height(physical=True)
        key = w, h, self.figure.dpi
        if self._lastKey != key:
            self.renderer = _Renderer(w, h, self.figure.dpi)
            self._lastKey = key
        return self.renderer
