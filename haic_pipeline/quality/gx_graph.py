"""GX's metric graphs built with less repeated work: GX's own code, the same results.

Two things dominate the time GX 1.24.1 spends building the metric graph of a validation, more
than it then spends computing the metrics on a small frame: the expectations' kwargs, and the
metric ids.

**The kwargs, read once per call, not once per key.**

Building the metric graph of a validation, GX asks each expectation for its kwargs many times
(`get_metric_kwargs` -> `Expectation._get_runtime_kwargs` -> `_get_success_kwargs` ->
`_get_domain_kwargs`, GX 1.24.1 `expectations/expectation.py`). Each of those methods reads
`self.configuration.kwargs` inside a comprehension, once per key, and the `configuration`
property rebuilds a whole `ExpectationConfiguration` at every read (a pydantic `.dict()`, a
regex `camel_to_snake` of the class name): about ten builds per expectation and metric. Over a
refresh that is most of the time GX spends building its graphs, more than it spends computing.

`install()` replaces those four methods with the same code reading `self.configuration.kwargs`
once per call (the property is a pure function of the expectation, which nothing changes during
the call), and memoises `camel_to_snake` (a pure function of a class name).

**The metric ids, without the generic JSON conversion for plain values.** Every
`MetricConfiguration` (about 180 per validation) hashes its domain and value kwargs
(`IDDict.to_id`: `convert_to_json_serializable`, then `json.dumps(sort_keys=True)` and MD5).
The conversion walks each value through some twenty `isinstance` tests (pydantic's among them)
although the kwargs here are strings, numbers, booleans, None and lists of them, which it returns
unchanged (a tuple becomes a list, which `json.dumps` writes the same way). `install()` gives
`to_id` a conversion that returns such plain values as they are and hands anything else (a NaN,
a set, a numpy or pandas value, a model) to GX's own.

None of this changes a result: a test compares each replaced function with GX's original
(`ORIGINALS`) on every expectation of every generated suite, and on every metric id of a real
validation of each. It is applied only to the GX version it was written against (`GX_VERSION`);
under another one GX runs its own code (a test then fails, asking for a review).
"""

from __future__ import annotations

import functools
from typing import Any

#: the Great Expectations release whose methods these reproduce
GX_VERSION = "1.24.1"
#: GX's own methods, camel_to_snake and convert_to_json_serializable, as they were before install()
ORIGINALS: dict[str, Any] = {}
_gx: dict[str, Any] = {}  # what the methods use of GX's module: its logger, parse_result_format


def _domain_kwargs(self, kwargs: dict) -> dict:
    domain_kwargs = {key: kwargs.get(key, self._get_default_value(key)) for key in self.domain_keys}
    return domain_kwargs  # GX's check for missing keys cannot fire: every domain key is a key here


def _success_kwargs(self, kwargs: dict) -> dict:
    domain_kwargs = _domain_kwargs(self, kwargs)
    success_kwargs = {key: kwargs.get(key, self._get_default_value(key)) for key in self.success_keys}
    success_kwargs.update(domain_kwargs)
    return success_kwargs


def _success_kwarg(self, kwargs: dict, key: str, default: Any = None) -> Any:
    if key in kwargs:
        return kwargs[key]
    field = self.__fields__.get(key)
    if field is not None:
        return field.default if not field.required else default
    _gx["logger"].warning(f'_get_success_kwarg called with key "{key}", '
                          f"but it is not a known field of {type(self).__name__}")
    return default


def _get_domain_kwargs(self) -> dict:
    return _domain_kwargs(self, self.configuration.kwargs)


def _get_success_kwargs(self) -> dict:
    return _success_kwargs(self, self.configuration.kwargs)


def _get_success_kwarg(self, key: str, default: Any = None) -> Any:
    return _success_kwarg(self, self.configuration.kwargs, key, default)


def _get_runtime_kwargs(self, runtime_configuration: dict | None = None) -> dict:
    runtime_configuration = runtime_configuration or {}
    kwargs = self.configuration.kwargs
    success_kwargs = _success_kwargs(self, kwargs)
    runtime_kwargs = {key: runtime_configuration.get(key, _success_kwarg(self, kwargs, key))
                      for key in self.runtime_keys}
    runtime_kwargs.update(success_kwargs)
    runtime_kwargs["result_format"] = _gx["parse_result_format"](runtime_kwargs["result_format"])
    return runtime_kwargs


def _plain(value: Any) -> bool:
    """A value GX's JSON conversion returns unchanged (up to tuple -> list): a str, int, bool,
    None, a float that is not NaN, or a list / tuple / str-keyed dict of such values (exact types:
    a subclass, an Enum, a numpy scalar, goes to GX's conversion)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return value == value   # NaN: GX writes None
    if kind is list or kind is tuple:
        return all(_plain(v) for v in value)
    if kind is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    return False


def _id_json(data: Any) -> Any:
    """`convert_to_json_serializable` for `IDDict.to_id`: plain values as they are."""
    return data if _plain(data) else ORIGINALS["convert_to_json_serializable"](data)


METHODS = {"_get_domain_kwargs": _get_domain_kwargs, "_get_success_kwargs": _get_success_kwargs,
           "_get_success_kwarg": _get_success_kwarg, "_get_runtime_kwargs": _get_runtime_kwargs}


def install() -> bool:
    """Put the methods above in place of GX's (once per process); False, and GX left as it is,
    under a GX version other than GX_VERSION."""
    import great_expectations  # noqa: PLC0415 (imported by load_gx before this is called)
    from great_expectations.core import id_dict  # noqa: PLC0415
    from great_expectations.expectations import expectation  # noqa: PLC0415

    if great_expectations.__version__ != GX_VERSION:
        return False
    if ORIGINALS:
        return True
    cls = expectation.Expectation
    ORIGINALS.update({name: getattr(cls, name) for name in METHODS})
    ORIGINALS["camel_to_snake"] = expectation.camel_to_snake
    ORIGINALS["convert_to_json_serializable"] = id_dict.convert_to_json_serializable
    _gx.update(logger=expectation.logger, parse_result_format=expectation.parse_result_format)
    for name, method in METHODS.items():
        setattr(cls, name, method)
    expectation.camel_to_snake = functools.lru_cache(maxsize=None)(ORIGINALS["camel_to_snake"])
    id_dict.convert_to_json_serializable = _id_json   # the name IDDict.to_id calls
    return True
