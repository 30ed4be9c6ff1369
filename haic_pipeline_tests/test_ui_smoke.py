"""`dagster dev` (what `make ui` runs) starts from the repository root with workspace.yaml and
lists every asset of the code location and the data-quality checks on the staging assets, and
does not offer Dagster's first-visit sign-up dialog (checked through its GraphQL API)."""

from .webui import dagster_dev, graphql


def test_dagster_dev_starts_and_lists_the_assets(env):
    with dagster_dev() as port:
        data = graphql(port, "{ assetNodes { assetKey { path } } }")
        keys = {"/".join(n["assetKey"]["path"]) for n in data["data"]["assetNodes"]}
        for domain in ("patients", "treatments", "assessments", "labs", "imaging", "vital_status"):
            assert f"raw/{domain}" in keys and f"staging/{domain}" in keys
        assert {"staging/cohort", "staging/endpoints", "analysis/attrition"} <= keys
        # the data-quality checks on the staging assets, blocking for error rules
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
        # deploy/dagster.yaml `nux: enabled: false`: no community sign-up dialog at the first visit
        assert graphql(port, "{ shouldShowNux }")["data"]["shouldShowNux"] is False
