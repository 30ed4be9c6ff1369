"""Structural facts of the code that anyone can check: every `HAIC_*` variable is read in
`settings.py` alone, and every `ops` table and view is defined in `warehouse/schema.py` alone
(one `ensure_ops` creates them). Read from the source files, so a new module is covered."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import haic_pipeline

PACKAGE = Path(haic_pipeline.__file__).resolve().parent

#: a `HAIC_*` variable's name as a string of the code (a name inside a message is no read);
#: HAIC_FP is a regimen code of the extract, not a variable
VARIABLE = re.compile(r"HAIC_[A-Z0-9_]+")
NOT_VARIABLES = {"HAIC_FP"}
OPS_DDL = re.compile(r"\b(CREATE\s+(OR\s+REPLACE\s+)?(TABLE|VIEW|SEQUENCE|INDEX)(\s+IF\s+NOT\s+EXISTS)?\s+ops\.|"
                     r"ALTER\s+TABLE\s+(IF\s+EXISTS\s+)?ops\.|DROP\s+(TABLE|VIEW)\s+(IF\s+EXISTS\s+)?ops\.)",
                     re.IGNORECASE)


def _sources(*suffixes: str):
    for path in sorted(PACKAGE.rglob("*")):
        if path.suffix in suffixes and "__pycache__" not in path.parts:
            yield path, path.read_text(encoding="utf-8")


def _variable_names(text: str) -> list[tuple[int, str]]:
    return [(n.lineno, n.value) for n in ast.walk(ast.parse(text))
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and VARIABLE.fullmatch(n.value)
            and n.value not in NOT_VARIABLES]


def test_haic_variables_are_read_in_settings_only():
    readers = [f"{p.relative_to(PACKAGE)}:{line} {name}" for p, text in _sources(".py") if p.name != "settings.py"
               for line, name in _variable_names(text)]
    assert readers == []
    # not vacuous: settings.py names the variables it reads
    assert {"HAIC_WAREHOUSE", "HAIC_INBOX"} <= {name for _, name in _variable_names((PACKAGE / "settings.py").read_text())}


def test_ops_tables_are_defined_in_the_schema_module_only():
    schema = PACKAGE / "warehouse" / "schema.py"
    ddl = [f"{p.relative_to(PACKAGE)}:{n}" for p, text in _sources(".py", ".sql") if p != schema
           for n, line in enumerate(text.splitlines(), 1) if OPS_DDL.search(line)]
    assert ddl == []
    defined = set(re.findall(r"(?:TABLE|VIEW) IF NOT EXISTS ops\.(\w+)|OR REPLACE VIEW ops\.(\w+)", schema.read_text()))
    names = {a or b for a, b in defined}
    assert {"drops", "load_log", "quarantine", "row_flags", "refresh_state", "dq_results", "run_log", "software",
            "interventions", "waivers"} <= names
