"""`quality/gx_graph`: the expectations' kwargs read once per call, and the metric ids hashed
without GX's generic conversion of plain values, give what GX's own code gives, on every
expectation of every generated suite and every metric id of a real validation of each; the
replacement is in place under the locked GX."""

from __future__ import annotations

import copy
import datetime
import importlib.util
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from haic_pipeline.contracts import load_contracts
from haic_pipeline.quality import gx_graph
from haic_pipeline.quality.gx_runtime import load_gx, open_session
from haic_pipeline.quality.suites import build_suite, generate_checks
from haic_pipeline.quality.validate import RESULT_FORMAT, SuiteRunner

# the two-row frame of a suite's columns, as the benchmark of this module builds it
_spec = importlib.util.spec_from_file_location(
    "bench_gx_graph", Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gx_graph.py")
bench_gx_graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_gx_graph)

RUNTIME_CONFIGURATIONS = [None, {}, {"result_format": RESULT_FORMAT}, {"result_format": "BOOLEAN_ONLY"},
                          {"result_format": {"result_format": "COMPLETE", "unexpected_index_column_names": ["x"]}},
                          {"catch_exceptions": False, "include_config": False}]


def _expectations():
    gx = open_session().gx   # an expectation's configuration needs an active context
    for check in generate_checks(load_contracts()):   # every check GX validates
        for scope in sorted({r.scope for r in check.rules}):
            for config in build_suite(gx, check, scope).expectation_configurations:
                yield f"{check.name}.{scope}.{config.meta['rule']}", config


def _variants(config):
    """The configuration as the suite holds it, and as the validator runs it (with a batch id)."""
    yield config
    with_batch = copy.deepcopy(config)
    with_batch.kwargs["batch_id"] = "haic_quality-some_frame"
    yield with_batch


def test_the_replacement_is_in_place_under_the_locked_gx():
    gx = load_gx()
    assert gx.__version__ == gx_graph.GX_VERSION, "another GX: compare gx_graph with its methods again"
    from great_expectations.expectations import expectation

    for name, method in gx_graph.METHODS.items():
        assert getattr(expectation.Expectation, name) is method
        assert gx_graph.ORIGINALS[name] is not method
    assert expectation.camel_to_snake("ExpectColumnValuesToBeBetween") == "expect_column_values_to_be_between"
    assert gx_graph.install()   # idempotent: the originals are kept, not replaced by the replacement
    assert all(gx_graph.ORIGINALS[name] is not method for name, method in gx_graph.METHODS.items())


def test_every_generated_expectation_gets_the_kwargs_gx_itself_gives(caplog):
    original = gx_graph.ORIGINALS
    seen = set()
    for label, config in _expectations():
        for variant in _variants(config):
            expectation = variant.to_domain_obj()
            seen.add(type(expectation).__name__)
            assert expectation._get_domain_kwargs() == original["_get_domain_kwargs"](expectation), label
            assert expectation._get_success_kwargs() == original["_get_success_kwargs"](expectation), label
            for rc in RUNTIME_CONFIGURATIONS:
                got = expectation._get_runtime_kwargs(runtime_configuration=copy.deepcopy(rc))
                assert got == original["_get_runtime_kwargs"](expectation, runtime_configuration=copy.deepcopy(rc)), \
                    (label, rc)
            keys = {*expectation.domain_keys, *expectation.success_keys, *expectation.runtime_keys}
            for key in sorted(keys):
                assert expectation._get_success_kwarg(key) == original["_get_success_kwarg"](expectation, key), \
                    (label, key)
    # an unknown key: the same default, and the same warning in GX's log
    with caplog.at_level(logging.WARNING, logger="great_expectations.expectations.expectation"):
        assert expectation._get_success_kwarg("no_such_key", "d") == "d"
        ours = [r.getMessage() for r in caplog.records]
        caplog.clear()
        assert original["_get_success_kwarg"](expectation, "no_such_key", "d") == "d"
        assert ours == [r.getMessage() for r in caplog.records] and len(ours) == 1
    # every family of expectation the generated suites use was compared
    families = {r.expectation for check in generate_checks(load_contracts()) for r in check.rules}
    assert seen == families and len(seen) >= 6, sorted(seen)


def test_another_gx_version_keeps_gx_as_it_is(monkeypatch):
    import great_expectations

    monkeypatch.setattr(great_expectations, "__version__", "9.9.9")
    assert gx_graph.install() is False


@pytest.mark.parametrize("name", ["ExpectColumnValuesToBeInSet", "ExpectCompoundColumnsToBeUnique", "X"])
def test_the_memoised_camel_to_snake_is_gx_own(name):
    load_gx()
    from great_expectations.expectations import expectation

    assert expectation.camel_to_snake(name) == gx_graph.ORIGINALS["camel_to_snake"](name)


def test_every_metric_id_of_a_real_validation_is_the_one_gx_itself_computes(monkeypatch):
    from great_expectations.core import id_dict

    seen: list[tuple[dict, object, object]] = []
    to_id = id_dict.IDDict.to_id

    def recording(self, id_keys=None, id_ignore_keys=None):
        seen.append((dict(self), id_keys, id_ignore_keys))
        return to_id(self, id_keys, id_ignore_keys)

    session = open_session()
    with monkeypatch.context() as m:
        m.setattr(id_dict.IDDict, "to_id", recording)
        for check in generate_checks(load_contracts()):
            for scope in sorted({r.scope for r in check.rules}):
                runner = SuiteRunner(session, check, scope)
                runner.run(bench_gx_graph.frame_for(runner.definition.suite.expectation_configurations))
    multi = [s for s in seen if len(set(s[1] or s[0]) - set(s[2] or ())) > 1]
    assert len(multi) > 1000   # the ids worth hashing: most of a validation's metrics
    plain = 0
    for data, keys, ignore in seen:
        ours = id_dict.IDDict(data).to_id(keys, ignore)
        with monkeypatch.context() as m:
            m.setattr(id_dict, "convert_to_json_serializable", gx_graph.ORIGINALS["convert_to_json_serializable"])
            assert ours == id_dict.IDDict(data).to_id(keys, ignore), data
        plain += gx_graph._plain(data)
    assert plain >= 0.9 * len(seen)   # the fast path is the common one


@pytest.mark.parametrize("value", [
    {"column": "a", "mostly": 0.98, "value_set": ["x", "y"], "parse_strings_as_datetimes": None, "strict": True},
    {"column": "a", "min_value": float("nan")},                      # NaN: GX writes None
    {"column": "a", "value_set": {"y", "x"}},                         # a set: GX's conversion
    {"column": "a", "max_value": np.float64(1.5), "n": np.int64(3)},  # numpy scalars
    {"column": "a", "when": datetime.date(2024, 1, 31)},
    {"column": "a", "nested": {"result_format": "SUMMARY", "partial_unexpected_count": 0}, "t": ("p", 1)},
])
def test_the_id_conversion_is_gx_own_for_plain_and_other_values(value, monkeypatch):
    load_gx()
    from great_expectations.core import id_dict

    ours = id_dict.IDDict(value).to_id()
    monkeypatch.setattr(id_dict, "convert_to_json_serializable", gx_graph.ORIGINALS["convert_to_json_serializable"])
    assert ours == id_dict.IDDict(value).to_id()
