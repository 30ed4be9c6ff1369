import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from haic_pipeline.synthetic import write_drops  # noqa: E402


@pytest.fixture(scope="session")
def default_drops(tmp_path_factory):
    """The default drop set (100 patients, 6 drops, seed 1)."""
    return write_drops(tmp_path_factory.mktemp("synthetic_default"))


@pytest.fixture(scope="session")
def raw_drops(default_drops):
    """Per drop: (manifest, {domain: DataFrame of raw strings}, {domain: header list})."""
    import synthetic_study_helpers as h

    out = []
    for f in default_drops:
        man, data = h.read_drop(f)
        out.append((man, data))
    return out


@pytest.fixture(scope="session")
def merged_default(default_drops):
    import synthetic_study_helpers as h

    m = h.merged(default_drops)
    coh = h.cohort(m)
    return m, coh, h.endpoints(m, coh)
