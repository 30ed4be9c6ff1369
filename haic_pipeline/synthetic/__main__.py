"""CLI: ``python -m haic_pipeline.synthetic OUTDIR [--patients N] [--drops D] [--seed S]``."""

from __future__ import annotations

import argparse
import sys
import time

from . import write_drops


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m haic_pipeline.synthetic",
        description="Write synthetic EMR extract drops (see haic_pipeline.synthetic docstring).")
    ap.add_argument("outdir", help="inbox folder; one sub-folder per drop is written into it")
    ap.add_argument("--patients", type=int, default=100, help="study-eligible patients (default 100)")
    ap.add_argument("--drops", type=int, default=6, help="number of drops (default 6)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    folders = write_drops(args.outdir, patients=args.patients, drops=args.drops, seed=args.seed)
    for f in folders:
        print(f)
    print(f"wrote {len(folders)} drops in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
