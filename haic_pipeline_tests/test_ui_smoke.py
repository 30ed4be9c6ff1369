"""`dagster dev` (what `make ui` runs) starts from the repository root with workspace.yaml and
lists every asset of the code location and the data-quality checks on the staging assets
(checked through its GraphQL API)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .webui import free_port, graphql

ROOT = Path(__file__).resolve().parents[1]






def test_dagster_dev_starts_and_lists_the_assets(env):
    port = free_port()
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.Popen([str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                            cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + 150
        keys = None
        while time.time() < deadline:
            try:
                data = graphql(port, "{ assetNodes { assetKey { path } } }")
                keys = {"/".join(n["assetKey"]["path"]) for n in data["data"]["assetNodes"]}
                if keys:
                    break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(2)
        assert keys, "dagster dev did not answer within 150 s"
        for domain in ("patients", "treatments", "assessments", "labs", "imaging", "vital_status"):
            assert f"raw/{domain}" in keys and f"staging/{domain}" in keys
        assert {"staging/cohort", "staging/endpoints", "analysis/attrition"} <= keys
        # the data-quality checks on the staging assets (issue 4), blocking for error rules
        nodes = graphql(port, "{ assetNodes { assetKey { path } assetChecksOrError { "
                              "... on AssetChecks { checks { name blocking } } } } }")["data"]["assetNodes"]
        checks = {"/".join(n["assetKey"]["path"]): {c["name"]: c["blocking"] for c in
                                                    n["assetChecksOrError"].get("checks", [])} for n in nodes}
        for domain in ("patients", "treatments", "assessments", "labs", "imaging", "vital_status"):
            assert checks[f"staging/{domain}"][f"{domain}_error_rules"] is True
            assert checks[f"staging/{domain}"][f"{domain}_warn_rules"] is False
        assert checks["staging/patients"]["drop_sequence"] is True
        assert checks["staging/patients"]["drop_changes"] is False
        assert checks["staging/vital_status"]["cross_table_rules"] is False
        loc = graphql(port, "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }")
        assert [e["name"] for e in loc["data"]["workspaceOrError"]["locationEntries"]] == ["haic_pipeline"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
