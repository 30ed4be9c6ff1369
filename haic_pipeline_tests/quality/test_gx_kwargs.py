"""`quality/gx_kwargs`: the expectations' kwargs read once per call give what GX's own methods give,
on every expectation of every generated suite, and the replacement is in place under the locked GX."""

from __future__ import annotations

import copy
import logging

import pytest

from haic_pipeline.contracts import load_contracts
from haic_pipeline.quality import gx_kwargs
from haic_pipeline.quality.gx_runtime import load_gx, open_session
from haic_pipeline.quality.suites import build_suite, generate_checks
from haic_pipeline.quality.validate import RESULT_FORMAT

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
    assert gx.__version__ == gx_kwargs.GX_VERSION, "another GX: compare gx_kwargs with its methods again"
    from great_expectations.expectations import expectation

    for name, method in gx_kwargs.METHODS.items():
        assert getattr(expectation.Expectation, name) is method
        assert gx_kwargs.ORIGINALS[name] is not method
    assert expectation.camel_to_snake("ExpectColumnValuesToBeBetween") == "expect_column_values_to_be_between"
    assert gx_kwargs.install()   # idempotent: the originals are kept, not replaced by the replacement
    assert all(gx_kwargs.ORIGINALS[name] is not method for name, method in gx_kwargs.METHODS.items())


def test_every_generated_expectation_gets_the_kwargs_gx_itself_gives(caplog):
    original = gx_kwargs.ORIGINALS
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
    assert gx_kwargs.install() is False


@pytest.mark.parametrize("name", ["ExpectColumnValuesToBeInSet", "ExpectCompoundColumnsToBeUnique", "X"])
def test_the_memoised_camel_to_snake_is_gx_own(name):
    load_gx()
    from great_expectations.expectations import expectation

    assert expectation.camel_to_snake(name) == gx_kwargs.ORIGINALS["camel_to_snake"](name)
