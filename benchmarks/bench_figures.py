"""Benchmark: drawing the study's figures, with the figures' Agg canvas and with matplotlib's own.

    .venv/bin/python benchmarks/bench_figures.py [--patients 100] [--drops 6] [--rounds 3]

Builds the demo study and its analysis tables in a temp folder (benchmarks/_demo.py), then draws
every figure of a refresh from the tables (`render.FIGURES`) as `save_figure` does (the figure,
its Agg drawing, PNG, SVG and UI preview; no file written), once with `analysis/agg.Canvas` and
once with matplotlib's `FigureCanvasAgg`, alternated `--rounds` times. Prints the median CPU
milliseconds per figure of the whole drawing and of the Agg drawing alone, and checks that both
canvases give the same PNG bytes. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import statistics
import time

from _demo import arguments, demo_study


def main() -> None:
    args = arguments(__doc__, "rounds")

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from haic_pipeline.analysis import build_analysis
    from haic_pipeline.analysis import figures as F
    from haic_pipeline.analysis.agg import Canvas
    from haic_pipeline.analysis.render import FIGURES, draw_figure, figure_inputs

    with demo_study("figures", args.patients, args.drops) as (con, folder):
        build_analysis(con, folder / "reports")   # the tables, and a first drawing of each figure
        inputs = {name: figure_inputs(con, name) for name in FIGURES}

    canvases = {"agg.Canvas": Canvas, "FigureCanvasAgg": FigureCanvasAgg}
    whole: dict[str, list[float]] = {c: [] for c in canvases}
    agg: dict[str, list[float]] = {c: [] for c in canvases}
    pngs: dict[str, list[bytes]] = {}
    for _ in range(args.rounds):
        for name, canvas in canvases.items():
            t_whole = t_agg = 0.0
            pngs[name] = []
            for figure in FIGURES:
                t0 = time.process_time()
                fig = draw_figure(inputs[figure])
                canvas(fig)
                t1 = time.process_time()
                image = F.rendered(fig)
                t_agg += time.process_time() - t1
                pngs[name].append(F.encoded_png(image))
                F.svg_bytes(fig)
                F.preview_png(image)
                t_whole += time.process_time() - t0
            whole[name].append(1000 * t_whole / len(FIGURES))
            agg[name].append(1000 * t_agg / len(FIGURES))
    same = pngs["agg.Canvas"] == pngs["FigureCanvasAgg"]
    print(f"{len(FIGURES)} figures of {args.patients} patients, {args.drops} drops; median of {args.rounds} rounds, "
          f"CPU ms per figure; the same PNG bytes from both canvases: {'yes' if same else 'NO'}")
    print(f"{'canvas':<16} {'drawing, PNG, SVG, preview':>27} {'Agg drawing':>12}")
    for name in canvases:
        print(f"{name:<16} {statistics.median(whole[name]):>27.1f} {statistics.median(agg[name]):>12.1f}")


if __name__ == "__main__":
    main()
