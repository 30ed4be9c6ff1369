"""The automation conditions of the code location, evaluated by `automation_condition_sensor`.

- STAGING_AUTOMATION: a staging table is rebuilt after new raw data lands, once per change.
- STUDY_AUTOMATION: everything downstream of staging recomputes after any upstream change, but
  never past a failed blocking check. Each upstream asset must either be requested in the same
  tick (its blocking checks then run in that run and stop what is downstream if they fail) or
  have passed its blocking checks. So one tick requests a whole refresh, the first one of a new
  deployment included (Dagster's `all_deps_blocking_checks_passed` asks each check itself to be
  requested or passed: a check that has never run would hold back its downstream for a tick,
  one run per layer of blocking checks), and a check that failed holds its downstream until its
  asset is recomputed.
"""

import dagster as dg

STAGING_AUTOMATION = dg.AutomationCondition.eager()

BLOCKING_CHECKS_PASSED_OR_RERUN = dg.AutomationCondition.all_deps_match(
    dg.AutomationCondition.will_be_requested()
    | dg.AutomationCondition.all_checks_match(dg.AutomationCondition.check_passed(), blocking_only=True)
).with_label("all_deps_requested_or_blocking_checks_passed")

STUDY_AUTOMATION = dg.AutomationCondition.eager() & BLOCKING_CHECKS_PASSED_OR_RERUN
