"""The documentation stays a front door with guides that are true of the code.

- README.md is under 150 lines;
- every relative link or image in README.md, docs/*.md and the other guides resolves to a file
  of the repository (anchors are not checked);
- every `make <target>` the docs name is a target of the Makefile;
- every `haic <subcommand>` (and `haic drop|check <action>`) the docs name is one the CLI's
  parser accepts, read from `haic --help`;
- no code, doc or contract narrates the project's history by issue or session number.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

from haic_pipeline.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GUIDES = sorted((ROOT / "docs").glob("*.md"))
DOCS = [README, *GUIDES, ROOT / "ARCHITECTURE.md", ROOT / "data_contracts" / "README.md",
        ROOT / "benchmarks" / "RESULTS.md"]

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")
MAKE = re.compile(r"(?:^|[\s(;&|])make ([A-Za-z][\w.-]*)")
# `haic` as a command, not as the service user's or group's name (sudo -u haic, --owner haic)
HAIC = re.compile(r"(?:^|[\s(/;&|])(?<!-u )(?<!--owner )haic ([a-z][a-z-]*)(?: ([a-z]+(?:\|[a-z]+)*))?")
#: a package list names `make` as a package, not a target
PACKAGES = re.compile(r"^.*\bapt(?:-get)? install\b.*$", re.M)


def _code(text: str) -> list[str]:
    """The fenced blocks and inline code spans of a markdown text."""
    blocks = FENCE.findall(text)
    return blocks + SPAN.findall(FENCE.sub("", text))


def _prose(text: str) -> str:
    """A markdown text without its code (where [x](y) may be code, not a link)."""
    return SPAN.sub("", FENCE.sub("", text))


def test_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 150, f"README.md has {len(lines)} lines; the detail belongs in docs/"
    text = "\n".join(lines)
    for guide in ("operating", "analysts", "statistics", "developing"):
        assert f"(docs/{guide}.md" in text, f"README.md does not link docs/{guide}.md"
    assert "make run" in text and "make test" in text
    assert "(docs/screenshots/asset_graph.png)" in text


def test_guides_exist():
    names = {p.name for p in GUIDES}
    assert {"operating.md", "analysts.md", "statistics.md", "developing.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    broken = []
    for target in LINK.findall(_prose(doc.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor of the same page
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)} links to missing files: {broken}"


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_./-]+)\s*:(?!=)", text, re.M))


def test_every_make_target_named_exists():
    targets = _make_targets()
    assert {"run", "test"} <= targets
    missing = {}
    for doc in DOCS:
        for code in _code(doc.read_text(encoding="utf-8")):
            for name in MAKE.findall(PACKAGES.sub("", code)):
                if name not in targets:
                    missing.setdefault(str(doc.relative_to(ROOT)), []).append(name)
    assert not missing, f"make targets named in the docs but not in the Makefile: {missing}"


def _help(*args: str) -> str:
    """What `haic ... --help` prints (the CLI's own parser, run in this process)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        main([*args, "--help"])
    assert exit_.value.code == 0
    return out.getvalue()


def _choices(usage: str) -> set[str]:
    found = re.search(r"\{([\w,-]+)\}", usage)
    return set(found.group(1).split(",")) if found else set()


def test_every_haic_command_named_exists():
    subcommands = _choices(_help())
    assert {"run", "status", "drop", "check", "snapshot", "sql"} <= subcommands
    actions = {sub: _choices(_help(sub)) for sub in subcommands}
    wrong = []
    for doc in DOCS:
        for code in _code(doc.read_text(encoding="utf-8")):
            for sub, action in HAIC.findall(code):
                where = f"{doc.relative_to(ROOT)}: haic {sub} {action}".rstrip()
                if sub not in subcommands:
                    wrong.append(where)
                elif action and actions[sub] and not set(action.split("|")) <= actions[sub]:
                    wrong.append(where)
    assert not wrong, f"haic commands named in the docs that the CLI does not have: {wrong}"


NARRATION = re.compile(r"\b(issue|session)\s*#?\d+", re.I)
SKIP_DIRS = {".git", ".venv", ".tools", "warehouse", "node_modules", "__pycache__", ".pytest_cache"}
TEXT = (".py", ".md", ".yaml", ".yml", ".sql", ".toml", ".txt", ".cfg")


def test_no_history_narrated_by_issue_or_session():
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            if not (name.endswith(TEXT) or name == "Makefile"):
                continue
            path = Path(dirpath) / name
            for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if NARRATION.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "say what is true now and why, not which issue or session did it:\n" + "\n".join(found)
