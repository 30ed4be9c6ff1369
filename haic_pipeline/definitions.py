"""The code location: every asset, check, sensor, schedule and resource under `defs/<area>/`.

Assembled as in Dagster's dagster-open-platform: each area folder holds its own definitions
and `load_from_defs_folder` merges them. No statistics and little SQL live in this layer.
"""

from pathlib import Path

import dagster as dg


def load() -> dg.Definitions:
    """The merged Definitions (used by the CLI and the tests; `dagster dev` uses `defs`).

    Built anew on each call (not cached): the resources read the HAIC_* variables when the
    definitions are built, so a caller that changed them (a test's temp warehouse) gets them."""
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)


@dg.definitions
def defs() -> dg.Definitions:
    return load()
