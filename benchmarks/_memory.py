"""Peak memory of a process *tree* (a run and its worker processes), sampled from /proc.

`getrusage(RUSAGE_CHILDREN).ru_maxrss` gives the largest single descendant, not the sum of a
run and its data-quality workers running at the same time; this sums the RSS of every live
process under the root, ten times a second, and keeps the maximum. Also: what becomes of a
benchmark's temp folder (`keep_or_remove`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree_rss(root: int) -> int:
    parent: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            parent[int(entry.name)] = int(fields[1])
            rss[int(entry.name)] = int(fields[21]) * PAGE
        except (OSError, ValueError, IndexError):
            continue
    total, stack = 0, [root]
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def run_measured(cmd: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    """Run `cmd` (subprocess.run keywords), return (completed process, peak tree RSS in GiB)."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    kwargs.setdefault("text", True)
    proc = subprocess.Popen(cmd, **kwargs)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            done.wait(0.1)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    done.set()
    t.join()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), peak[0] / 1024 ** 3


def keep_or_remove(folder: Path, keep: bool) -> None:
    """A benchmark's temp folder: kept, its path printed (`--keep`), or removed."""
    if keep:
        print(f"kept {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)
