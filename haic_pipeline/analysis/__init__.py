"""The study's analysis layer (study_spec §3-§5): the ``analysis.*`` tables, the figures and the
study report, computed from ``staging.cohort`` and ``staging.endpoints`` alone with
haic_pipeline.stats (R ``survival`` parity). Pure Python + DuckDB + matplotlib, no Dagster.

    data.py       what is read (included patients + endpoints, provenance) and the ONE place
                  where the Cox candidates and the Table 1 variables are derived
    tables.py     the tables of §4 as DataFrames (calls into haic_pipeline.stats only)
    beyond.py     the tables of §5.5 and §5.7 ("beyond the paper": propensity score, positivity,
                  balance, IPTW and overlap weights, E-values, RMST, proportional-hazards tests)
                  as DataFrames, likewise
    warehouse.py  the analysis.* schemas and the one-transaction writes
    checks.py     consistency checks of the stored tables (Dagster asset checks call them)
    figures.py    KM curves (paper Figures 1-2 / survminer style), forest plots, the Love plot,
                  the propensity scores of the two groups and the IPTW-adjusted KM curves
    agg.py        their Agg canvas: matplotlib's pixels, drawn with less work per glyph
    report.py     study_report.html (self-contained) and study_report.md
    build.py      build_baseline / build_survival / build_response / build_cox /
                  build_refresh_history / build_beyond / build_software / build_figures /
                  build_report /
                  build_analysis

Readings taken where the spec leaves room (also in ARCHITECTURE.md):

Tables and codes
- Every analysis table = the spec's columns in the spec's order, then explanatory columns where
  needed (``note`` on survival_tests / response_tests, ``detail`` on cox_excluded), then the
  provenance ``data_cutoff`` (DATE) and ``extract_id`` (the newest loaded drop; every loaded drop
  up to it contributes, ``ops.drops`` lists them). refresh_history has them as its key.
- Analysis population: the included patients of staging.cohort (= the rows of staging.endpoints;
  the build refuses to run if the two disagree; negative times: see below).
- ``group`` values in km_summary / follow_up / response_summary: ``overall``, ``first_line``,
  ``post_ate_beva`` (rows always present; n = 0 and NULL estimates for an empty group).
- Proportions (rate_12m and its CI, orr, dcr) are fractions in [0, 1], not percentages.
- Times in months (30.4375 days), as staging.endpoints.

Kaplan-Meier
- km_curves: one row per distinct observed time (event or censoring) per endpoint x group,
  including ``overall``, as R ``summary(survfit, censored = TRUE)``; no artificial time-0 row;
  lower / upper NULL where S = 0 (R: NA).
- rate_12m = S(12) with its log CI, as R ``summary(fit, times = 12)``: NULL when the group's
  longest observed time is < 12 months (R, without ``extend = TRUE``, returns no row; early
  drops have no patient followed to 12 months and a carried-forward S would be a guess). The
  12-month test is then not computed (NULL with a note).
- survival_tests ``rate_12m``: statistic = z (first_line minus post_ate_beva on the cloglog
  scale), df NULL. ``logrank``: statistic = chi-square, df = k - 1 = 1.
- Negative times in staging.endpoints (a censoring date before the index date: the last
  contact was before the first HAIC; or an event before it: a source error) become missing for
  that endpoint (R ``na.omit``): n / events in km_summary count the patients analysed; a
  censored negative time changes no KM, log-rank or Cox estimate anyway. Counted in the run log,
  the asset metadata (``problems``) and the report.
  A test that cannot be computed (one group empty, no events, S(12) = 0 or 1 in a group) is a
  row with NULL statistic / p_value and the reason in ``note``.
- follow_up: reverse KM of OS time, for overall and each group; lower / upper = the CI of that
  median (R's quantile rule on the CI curves).

Table 1
- Variables (the paper's): age (mean ± SD, Student's t); sex, etiology, ECOG (0/1/2/3 levels),
  Child-Pugh class, BCLC stage, AFP ≥ 400, multiple tumours, tumour size > 10 cm, portal vein
  invasion, extrahepatic metastasis (n (%), chi-square / Fisher over all observed levels).
  ``variable`` = the staging.cohort column name; booleans have levels ``yes`` / ``no`` (both
  rows always); a first row ``n`` (level '') gives the group sizes; a ``missing`` row where
  values are missing (percentages and tests over non-missing values). Cells are the formatted
  strings of stats.build_table1 (``65.79 ± 11.19``, ``12 (34.3)``); test codes ``t_test`` /
  ``chi2`` / ``fisher``.

Response
- response_summary: counts of best_response per group (and overall); orr = (CR + PR) / n,
  dcr = (CR + PR + SD) / n over every included patient. response_tests: statistic NULL for
  Fisher.

Cox
- Terms derived in data.cox_terms (age_ge_65 = age ≥ 65; sex_male = 'M'; etiology_hbv =
  'HBV' vs any other; ecog_0 = ECOG == 0; child_pugh_a = A vs B/C; bclc_c_d = C/D vs A/B;
  the five booleans as stored; group = post_ate_beva vs first_line); missing stays missing.
- The 20% missing rule is over all included patients; ``no_variation`` among the complete
  cases of time, event and the candidate (stats.cox_screening).
- Models that cannot be fitted are recorded, never stored as NaN: a univariable failure is a
  cox_excluded row ``not_estimable`` (stats rule); no events at all: every candidate
  ``not_estimable``; a multivariable failure: its terms as ``multivariable_not_estimable`` with
  the error in ``detail`` (cox_models then holds the univariable rows only). Each case is also a
  warning in the run log, in the asset metadata (``problems``) and in the report.
- cox_models rows: univariable rows in the candidates' order, then the multivariable rows.

Beyond the paper (§5; beyond.py)
- Propensity covariates: the §3 candidates other than ``group`` with at most 20% missing over
  the included patients and more than one value among those who have it (the Cox exclusion
  rule, taken once over the included patients rather than per endpoint); the candidates left
  out are propensity_model rows with status ``left_out`` and the reason. Patients missing a
  covariate are left out of every §5 analysis and counted (``n_excluded_missing``): the
  *modelled patients*.
- One population: every §5 table is on the modelled patients; weighting ``none`` is the
  unweighted analysis of those patients (KM with Greenwood variance, Cox with the model-based
  se, RMST with survRM2's variance; iptw_weights ``none`` rows: weight 1), so "weighting changes
  X" never mixes in "dropping patients changes X". The report gives the number of included
  patients beyond them.
- A covariate the fit leaves out (stats.propensity_weights: constant among the modelled
  patients, a linear combination of earlier ones, or a 0/1 level seen in one group only) is a
  propensity_model row with status ``left_out`` and the reason; balance keeps it with
  ``in_propensity_model`` false. Only when the fit still separates, does not converge, has too
  few patients or a constant treatment: the propensity_model rows with NULL coef / se / p, that
  status and the reason; every weighted row then holds NULL numbers and that reason in
  ``note``; the ``none`` rows, balance's smd_before and ph_tests' unweighted models stand.
- Weightings: ``stabilized`` (ATE), ``truncated`` (those weights clipped at their 1st and 99th
  percentiles over the modelled patients, R ``quantile(type = 3)``, applied to the one ATE fit;
  iptw_weights clipped_low / clipped_high count the clipped weights over all modelled patients,
  repeated on both group rows, and the truncated rows' note says when nothing was clipped),
  ``overlap`` (ATO, a second fit with estimand ATO). ``estimand`` names it on iptw_weights and
  iptw_effects.
- balance: over the modelled patients; share_* unweighted, share_*_weighted with the stabilized
  weights, smd_after_truncated / smd_after_overlap with the others; an SMD that is infinite (a
  covariate splitting the groups completely) is NULL with a note. Overlap weights balance every
  modelled covariate exactly: |smd_after_overlap| > 1e-6 is a note on the row, a problem in
  the run log and the asset metadata, and fails the warning check
  ``overlap_weights_balance_exactly`` (checks.overlap_balance).
- propensity_overlap: per group n, min, quartiles (R ``quantile()`` type 7 = NumPy linear),
  max of the fitted ps, and the patients below the other group's minimum or above its maximum;
  propensity_histogram: counts per group in 20 bins of 0.05 on [0, 1] (the figure draws them,
  so no patient-level score is stored). Without a fit: NULL rows with the reason, no bins.
- iptw_km_summary / iptw_effects: groups first_line and post_ate_beva only (a weighted
  "overall" curve describes no one); n / events are patients and events (unweighted counts),
  ess and sum_weights the weights' (n for ``none``); rate_12m by §3's rule. iptw_km_curves:
  one row per distinct time, unweighted counts beside the weighted sums.
- iptw_effects: a weighted Cox fit that fails (e.g. no event in one group) leaves hr / CI / p
  / E-values NULL with the reason, and the robust score test (taken at beta = 0,
  stats.weighted_logrank) is still given. E-values for every weighted HR and in a row
  ``weighting = 'multivariable'`` for the multivariable Cox HR of group (its n, events, HR, CI
  and p copied from cox_models); the outcome is rare (HR taken as RR) when events < 15% of the
  row's patients (``outcome_rare``), ``e_value_rr`` the risk ratio used. ``none`` has no robust
  score test and no E-value (it is not an adjusted estimate).
- rmst: ``none``, ``stabilized``, ``overlap``, all on the modelled patients; tau_requested 12,
  tau_months the bound used, tau_truncated and note when lowered.
- ph_tests: every model of analysis.cox_models (each univariable model, then the
  multivariable one), unweighted, and the weighted Cox fits of group (``iptw_stabilized``,
  ``iptw_overlap``, cox.zph with the weights, given log(hr) of iptw_effects); each model gets
  its term rows and a GLOBAL row (for a one-term model the same test), ``model_terms`` tells the
  univariable models apart. An endpoint without any Cox model is one row with a note.
- Report wording (§5.6): p-values "nominal p"; no "statistically significant" and no "not
  confounded"; the estimands named (ATE, ATO); the assumptions stated once; a PH test that does
  not reject is "no evidence against", with "with N events this test has little power" below
  100 events (N: the univariable group model's events); truncation gets a conclusion only when
  it clipped weights.
- The NaN / inf check (``stores_no_nan_or_inf``, one per §5 table) is blocking: such a number
  can only come from a defect (non-finite results are stored as NULL with a note), and the
  report and the analysts' copy keep their last good state rather than publish it.

refresh_history
- One snapshot (OS/PFS x overall/first_line/post_ate_beva: n, events, median_months, rate_12m)
  per extract_id, taken from analysis.km_summary when that extract_id is not yet in the table;
  several drops landed before one refresh give one snapshot (the state after the newest).
- Its monitoring columns (study_spec §6.3, the same on every row of a drop; §6.3's ``events``
  is ``monitoring_events`` there) hold the monitoring state after that drop, filled once by the
  monitoring step; a drop no longer loaded keeps NULL with ``monitoring_note``.

monitoring (study_spec §6; haic_pipeline.analysis.monitoring)
- Drop order = extract_id order (the order drops land in: an older drop is refused by the
  drop_sequence check). The state after drop j = staging, cohort and endpoints rebuilt from the
  loaded drops up to j by the same SQL models (replayed in memory when j is not the newest); the
  data-quality gate is not replayed (its blocking failures stop the live refresh until the drop is
  retracted or waived, and the staging models quarantine offending rows either way).
- Retractions count as they stand now: retracting or restoring a drop re-derives every later
  drop's state and the looks are recomputed from the new sequence (a snapshot counts them as they
  stood then). Changing the plan recomputes the looks from the recorded per-drop inputs.
- Events, z and the Cox fit are over the included patients with a non-negative time of the
  plan's endpoint (the log-rank's and km_summary's patients); accrual counts included patients
  with cutoff - 365 days <= index_date <= cutoff, whatever their time.
- D = ceil(Schoenfeld's events) unless the plan sets planned_events; milestone events ceil(m D).
- ``boundary_now``: the boundary of the last look when a look was taken at the newest drop,
  otherwise of a look at the current information after the looks taken; NULL (with a note) at
  no events, once monitoring has ended, or when it is +inf. Conditional power uses every look
  taken so far. A look whose boundary is +inf cannot cross; its repeated CI is NULL (noted).
- analysis.monitoring_boundaries (beyond §6's tables): what the monitoring figure draws, the
  boundary of each look taken and the planned ones at the milestones ahead given those looks.
"""

from .build import (
    BuildResult,
    build_analysis,
    build_baseline,
    build_beyond,
    build_cox,
    build_figures,
    build_monitoring,
    build_refresh_history,
    build_report,
    build_response,
    build_software,
    build_survival,
)
from .data import COX_TERMS, AnalysisInputError, Provenance, cox_terms, load_study_data
from .render import BEYOND_FIGURES, FIGURES, render_figure
from .warehouse import BEYOND_TABLES, TABLES

__all__ = [
    "BEYOND_FIGURES", "BEYOND_TABLES", "COX_TERMS", "FIGURES", "TABLES", "AnalysisInputError", "BuildResult",
    "Provenance", "build_analysis", "build_baseline", "build_beyond", "build_cox", "build_figures",
    "build_monitoring", "build_refresh_history", "build_report", "build_response", "build_software", "build_survival", "cox_terms", "load_study_data",
    "render_figure",
]
