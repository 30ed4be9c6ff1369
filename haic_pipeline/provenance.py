"""The software that computes the results, as a methods section names it ("R 4.4.1, survival
3.7-0"): the interpreter, the libraries every number passes through, and the project's own git
commit, recorded with every refresh (`ops.software`, `analysis.software`), on the analysis assets'
metadata and in the study report's provenance line.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from functools import lru_cache
from importlib import metadata

from haic_pipeline.settings import project_root

#: the distributions a result passes through, in the order a methods section lists them
PACKAGES = ("duckdb", "pandas", "numpy", "scipy", "lifelines", "statsmodels", "great-expectations", "dagster",
            "matplotlib")


def git_commit() -> str:
    """The project's commit (`+changes` when the work tree differs from it), or "unknown" outside
    a git checkout (an installed copy)."""
    root = project_root()
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+changes" if dirty else (head or "unknown")


@lru_cache(maxsize=1)
def software() -> dict[str, str]:
    """component -> version: python, each of PACKAGES ("not installed" if absent), haic-pipeline
    (its git commit). Read once per process: a process computes with one set of libraries."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["haic-pipeline"] = git_commit()
    return out


def describe(versions: dict[str, str] | None = None) -> str:
    """One line: "Python 3.11.7, duckdb 2.0.1, …, haic-pipeline 6b30f28"."""
    v = versions or software()
    parts = [f"Python {v['python']}"] + [f"{k} {v[k]}" for k in v if k not in ("python", "haic-pipeline")]
    commit = v.get("haic-pipeline", "unknown")
    return ", ".join(parts + [f"haic-pipeline {commit[:12] + commit[40:] if len(commit) >= 40 else commit}"])


def lock_sha256() -> str:
    """sha256 of the project's uv.lock (the whole environment, transitive dependencies included),
    or "unknown" without one."""
    try:
        return hashlib.sha256((project_root() / "uv.lock").read_bytes()).hexdigest()
    except OSError:
        return "unknown"
