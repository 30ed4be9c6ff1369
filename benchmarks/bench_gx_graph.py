"""Benchmark: Great Expectations' fixed cost per validation, with and without `quality/gx_graph`.

    .venv/bin/python benchmarks/bench_gx_graph.py [--repeat 5]

Every generated suite (each check and scope of `data_contracts/`) validated on a two-row frame of
its columns, in one process: on a small frame (a nightly delta, a test's drop) GX's time is
almost all the building of its metric graph, which does not depend on the rows. Prints the CPU
time per validation three ways, back to back in the same process:

- with `gx_graph` as installed (kwargs read once per call, metric ids without GX's generic JSON
  conversion of plain values);
- with the kwargs read once only (GX's own id conversion);
- GX as released (its own methods everywhere).

Not a test: timings depend on the machine (and on what else runs on it).
"""

from __future__ import annotations

import argparse
import time

import pandas as pd


def frame_for(configs) -> pd.DataFrame:
    columns = {}
    for config in configs:
        kwargs = config.kwargs
        for c in [kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs] + list(kwargs.get("column_list", [])):
            columns[c] = ["a", None]
    return pd.DataFrame(columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from haic_pipeline.contracts import load_contracts
    from haic_pipeline.quality import gx_graph
    from haic_pipeline.quality.gx_runtime import open_session
    from haic_pipeline.quality.suites import generate_checks
    from haic_pipeline.quality.validate import SuiteRunner

    session = open_session()   # imports GX and installs gx_graph
    from great_expectations.core import id_dict
    from great_expectations.expectations import expectation

    runs = []
    for check in generate_checks(load_contracts()):
        for scope in sorted({r.scope for r in check.rules}):
            runner = SuiteRunner(session, check, scope)
            runs.append((runner, frame_for(runner.definition.suite.expectation_configurations)))

    def per_validation_ms() -> float:
        for runner, frame in runs:   # warm
            runner.run(frame)
        t0 = time.process_time()
        for _ in range(args.repeat):
            for runner, frame in runs:
                runner.run(frame)
        return (time.process_time() - t0) / args.repeat / len(runs) * 1000

    installed = {name: getattr(expectation.Expectation, name) for name in gx_graph.METHODS}
    fast_ids, fast_c2s = id_dict.convert_to_json_serializable, expectation.camel_to_snake

    def gx_ids() -> None:
        id_dict.convert_to_json_serializable = gx_graph.ORIGINALS["convert_to_json_serializable"]

    def gx_methods() -> None:
        for name in gx_graph.METHODS:
            setattr(expectation.Expectation, name, gx_graph.ORIGINALS[name])
        expectation.camel_to_snake = gx_graph.ORIGINALS["camel_to_snake"]

    def as_installed() -> None:
        for name, method in installed.items():
            setattr(expectation.Expectation, name, method)
        expectation.camel_to_snake, id_dict.convert_to_json_serializable = fast_c2s, fast_ids

    print(f"{len(runs)} generated suites, each on a two-row frame, {args.repeat} rounds; CPU per validation:")
    for label, setup in (("gx_graph installed", as_installed), ("kwargs read once, GX's metric ids", gx_ids),
                         ("GX as released", gx_methods)):
        setup()
        print(f"  {label:36s} {per_validation_ms():6.1f} ms")
    as_installed()


if __name__ == "__main__":
    main()
