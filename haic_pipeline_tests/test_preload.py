"""preload.py: the slow imports in a thread, the cyclic garbage collector held off while they run
(`haic run`), and the heap they built frozen out of its reach once they are in. Each case in a
fresh interpreter: the collector's state belongs to the process."""

import json
import subprocess
import sys
import textwrap

import pytest

PRELUDE = """
import gc, json
from haic_pipeline import preload
seen = {}
def state():
    return {"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}
def load():
    seen["during"] = state()
    import email.mime.text  # noqa: F401
def fail():
    raise ImportError("no such library")
"""

CASES = {
    # `haic run`: held before the imports start, on again (and the heap frozen) when they are in
    "held_then_imported": """
preload.hold_collector()
seen["held"] = state()
preload.start(load)
preload.wait()
seen["after"] = state()
""",
    # held, but no import is started (nothing to land): release turns it on, and freezes
    "held_then_released": """
preload.hold_collector()
seen["held"] = state()
preload.release_collector()
seen["after"] = state()
""",
    # a failing loader still turns the collector back on
    "held_then_failed": """
preload.hold_collector()
preload.start(fail)
preload.wait()
seen["after"] = state()
""",
    # the gate of a Dagster run: the collector off while GX imports
    "started": """
preload.start(load)
preload.wait()
seen["after"] = state()
""",
    # the imports already ran in this process (a test worker, the gate): holding does nothing
    "after_the_imports": """
preload.start(load)
preload.wait()
seen["before"] = state()
preload.hold_collector()
seen["held"] = state()
preload.release_collector()
seen["after"] = state()
""",
}


def _run(case: str) -> dict:
    code = PRELUDE + textwrap.dedent(CASES[case]) + "\nprint(json.dumps(seen))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("case", ["held_then_imported", "held_then_released", "held_then_failed", "started"])
def test_the_collector_is_held_while_the_imports_run_and_on_again_with_the_heap_frozen(case):
    seen = _run(case)
    if "held" in seen:
        assert seen["held"] == {"enabled": False, "frozen": 0}
    if "during" in seen:
        assert seen["during"]["enabled"] is False
    assert seen["after"]["enabled"] is True
    assert seen["after"]["frozen"] > 1000   # the modules' objects, out of the collector's reach


def test_once_the_imports_ran_holding_does_nothing():
    seen = _run("after_the_imports")
    assert seen["before"]["enabled"] and seen["before"]["frozen"] > 1000
    assert seen["held"]["enabled"] is True and seen["after"]["enabled"] is True
