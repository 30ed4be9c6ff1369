"""Benchmark the synthetic EMR generator at scale.

    .venv/bin/python benchmarks/bench_synthetic.py [--patients 100000] [--drops 6] [--seed 1] [--keep DIR]

Times ``python -m haic_pipeline.synthetic TMPDIR --patients N --drops D`` (in a child
process, so its peak RSS is measured alone) and prints seconds, data rows per domain over all
drops (from the manifests), bytes written and the child's peak resident set size.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--drops", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", help="write here instead of a temporary folder (kept)")
    args = ap.parse_args()
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_synthetic_"))
    try:
        cmd = [sys.executable, "-m", "haic_pipeline.synthetic", str(out), "--patients", str(args.patients),
               "--drops", str(args.drops), "--seed", str(args.seed)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - t0
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        rows, size = Counter(), 0
        for man_path in sorted(out.glob("*/manifest.json")):
            man = json.loads(man_path.read_text())
            for name, info in man["files"].items():
                rows[name[:-4]] += info["rows"]
                size += (man_path.parent / name).stat().st_size
        print(f"patients={args.patients} drops={args.drops} seed={args.seed}")
        print(f"seconds: {seconds:.1f}")
        for domain, n in rows.items():
            print(f"rows {domain:13s} {n:>12,d}")
        print(f"rows {'total':13s} {sum(rows.values()):>12,d}")
        print(f"bytes written: {size / 1e6:.0f} MB")
        print(f"peak RSS: {peak_kb / 1024:.0f} MB")
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
