"""Structural facts of the code that anyone can check: no import circle between the project's
modules (imports inside functions included), every `HAIC_*` variable is read in `settings.py`
alone, and every `ops` table and view is defined in `warehouse/schema.py` alone (one `ensure_ops`
creates them). Read from the source files, so a new module is covered."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import haic_pipeline

PACKAGE = Path(haic_pipeline.__file__).resolve().parent

#: a `HAIC_*` variable's name (HAIC_FP is a regimen code of the extract, not a variable)
VARIABLE = re.compile(r"HAIC_[A-Z0-9_]+")
NOT_VARIABLES = {"HAIC_FP"}
OPS_DDL = re.compile(r"\b(CREATE\s+(OR\s+REPLACE\s+)?(TABLE|VIEW|SEQUENCE|INDEX)(\s+IF\s+NOT\s+EXISTS)?\s+ops\.|"
                     r"ALTER\s+TABLE\s+(IF\s+EXISTS\s+)?ops\.|DROP\s+(TABLE|VIEW)\s+(IF\s+EXISTS\s+)?ops\.)",
                     re.IGNORECASE)


def _sources(*suffixes: str):
    for path in sorted(PACKAGE.rglob("*")):
        if path.suffix in suffixes and "__pycache__" not in path.parts:
            yield path, path.read_text(encoding="utf-8")


def _variable_reads(text: str) -> list[tuple[int, str]]:
    """`x.get("HAIC_...")`, `os.getenv("HAIC_...")`, `environ["HAIC_..."]` (and pop/setdefault):
    a variable read from an environment; a name inside a message is no read."""
    def name(node):
        ok = isinstance(node, ast.Constant) and isinstance(node.value, str) and VARIABLE.fullmatch(node.value)
        return node.value if ok and node.value not in NOT_VARIABLES else None

    out = []
    for n in ast.walk(ast.parse(text)):
        if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                and n.func.attr in ("get", "getenv", "pop", "setdefault") and n.args and name(n.args[0])):
            out.append((n.lineno, name(n.args[0])))
        elif isinstance(n, ast.Subscript) and name(n.slice):
            out.append((n.lineno, name(n.slice)))
    return out


def test_haic_variables_are_read_in_settings_only():
    readers = [f"{p.relative_to(PACKAGE)}:{line} {name}" for p, text in _sources(".py") if p.name != "settings.py"
               for line, name in _variable_reads(text)]
    assert readers == []
    # not vacuous: settings.py names the variables it reads
    assert {"HAIC_WAREHOUSE", "HAIC_INBOX"} <= {name for _, name in _variable_reads((PACKAGE / "settings.py").read_text())}


def test_ops_tables_are_defined_in_the_schema_module_only():
    schema = PACKAGE / "warehouse" / "schema.py"
    ddl = [f"{p.relative_to(PACKAGE)}:{n}" for p, text in _sources(".py", ".sql") if p != schema
           for n, line in enumerate(text.splitlines(), 1) if OPS_DDL.search(line)]
    assert ddl == []
    defined = set(re.findall(r"(?:TABLE|VIEW) IF NOT EXISTS ops\.(\w+)|OR REPLACE VIEW ops\.(\w+)", schema.read_text()))
    names = {a or b for a, b in defined}
    assert {"drops", "load_log", "quarantine", "row_flags", "refresh_state", "dq_results", "run_log", "software",
            "interventions", "waivers"} <= names


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (at the top or inside a function); a package's
    own submodules are not counted as imports of the package's modules."""
    paths = {_module_name(p): p for p, _ in _sources(".py")}
    graph: dict[str, set[str]] = {m: set() for m in paths}
    for module, path in paths.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            graph[module] |= {n for n in names if n in paths and n != module and not module.startswith(n + ".")}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    graph = import_graph()
    assert circles(graph) == []
    # not vacuous: the graph holds the imports, and a circle would be found
    assert "haic_pipeline.warehouse.schema" in graph["haic_pipeline.quality.gate"]
    looped = {**graph, "haic_pipeline.warehouse.schema": graph["haic_pipeline.warehouse.schema"]
              | {"haic_pipeline.quality.gate"}}
    assert any("haic_pipeline.quality.gate" in c for c in circles(looped))
