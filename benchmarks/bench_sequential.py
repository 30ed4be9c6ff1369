"""Benchmark: group-sequential boundaries (``spending_boundaries``) for 4, 12 and 50 looks.

Usage:  python benchmarks/bench_sequential.py [--looks 4 12 50] [--repeat 20]

Prints, for equally spaced looks under each spending function (alpha = 0.05), the best and
the median wall time of one call over ``--repeat`` calls, and the last look's boundary.
Target (study_spec §6): 50 looks in under 0.1 s. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from haic_pipeline.stats import spending_boundaries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--looks", type=int, nargs="+", default=[4, 12, 50])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(f"{'spending':<8} {'looks':>5} {'best s':>9} {'median s':>9} {'last c':>8}")
    for spending in ("obf", "pocock"):
        for k in args.looks:
            t = np.arange(1, k + 1) / k
            spending_boundaries(t, 0.05, spending)  # warm-up (imports, caches)
            times = []
            for _ in range(max(1, args.repeat)):
                t0 = time.perf_counter()
                b = spending_boundaries(t, 0.05, spending)
                times.append(time.perf_counter() - t0)
            print(f"{spending:<8} {k:>5} {min(times):>9.4f} {statistics.median(times):>9.4f} "
                  f"{b.critical_z[-1]:>8.4f}")


if __name__ == "__main__":
    main()
