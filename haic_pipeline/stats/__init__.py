"""Statistics layer with R ``survival`` parity (pure functions over pandas / NumPy).

No Dagster and no DuckDB here. Public API (``from haic_pipeline.stats import ...``):

* :func:`kaplan_meier`, :func:`reverse_km_follow_up` -> :class:`KaplanMeier`   (km.py)
* :func:`logrank`, :func:`logrank_z` (signed two-group z), :func:`landmark_test`, :func:`compare_means`,
  :func:`compare_proportions`, :func:`fisher_exact_rxc`                      (tests.py)
* :func:`cox_regression` (optionally weighted, robust se), :class:`CoxFitError`,
  :func:`weighted_logrank` -> :class:`WeightedLogrankResult` (the robust score test of a
  weighted Cox model on the group, taken at beta = 0: no fit needed, so it exists when the
  Cox estimate diverges, e.g. no event in one group)                         (cox.py)
* :func:`propensity_weights` (``estimand="ATE"`` stabilized / ``"ATO"`` overlap weights;
  aliased and single-group covariates left out as R glm's NA coefficients, named with a
  reason; truncation with its clipped counts) -> :class:`PropensityResult`,
  :func:`balance_table`, :func:`weight_summary`, :func:`quantile_type3` (R type 3)  (iptw.py)
* :func:`e_value` -> :class:`EValueResult` (VanderWeele & Ding; common-outcome HR
  conversion), :func:`rare_outcome`                                          (evalue.py)
* :func:`rmst` -> :class:`RMSTResult`, :func:`rmst_compare` -> :class:`RMSTComparison` (rmst.py)
* :func:`cox_zph` (R ``cox.zph`` score test, survival >= 3.0; weighted fits with
  ``weights=``)                                                              (zph.py)
* :func:`cox_screening` (univariable screening + multivariable model of study_spec §3),
  :func:`binary_indicator`                                                   (models.py)
* :func:`build_table1` (Table 1 / ``analysis.baseline_characteristics``)     (table1.py)
* group-sequential monitoring: :func:`spending_boundaries` -> :class:`SpendingBoundaries`
  (rpact ``getDesignGroupSequential``), :func:`schoenfeld_events` (``getSampleSizeSurvival``),
  :func:`repeated_ci`, :func:`conditional_power`, :func:`expected_events`,
  :func:`months_to_target` / :func:`project_events` -> :class:`EventProjection`
  (per :class:`GroupFollowUp`)                                              (sequential.py)
* publication formatting: :func:`format_median_ci`, :func:`format_hr`,
  :func:`format_mean_sd`, :func:`format_p`, :func:`format_count_percent`,
  :func:`format_estimate_ci`                                                 (formatting.py)

What uses what:

* NumPy (own code): Kaplan-Meier (lifelines' CI is R's "log-log", not R's default "log",
  and its median has no midpoint rule), log-rank (lifelines agrees with R but is slower),
  landmark test, Cox (lifelines agrees only with tightened convergence and is too slow at
  1,000,000 rows), the exact r x c Fisher test (SciPy's r x c Fisher is Monte-Carlo).
* statsmodels: the propensity model's logistic fit (GLM Binomial, IRLS as R's ``glm``).
* NumPy (own code) also: weighted KM with R's infinitesimal-jackknife variance, robust
  (Efron dfbeta) Cox variance and robust score test, RMST variances, ``cox.zph``; lifelines
  differs from R on each (truncated weighted at-risk counts, score residuals without
  Efron ties, the RMST variance of lifelines #1682, the old zph test of lifelines #997).
* SciPy: Student's t (``ttest_ind(equal_var=True)``), Pearson chi-square
  (``chi2_contingency(correction=False)``), normal / chi-square tail probabilities.
* lifelines: used in the test suite as an independent second implementation (log-rank,
  Efron Cox with tight convergence) and to show where its defaults differ from R.
"""

from .cox import CoxFitError, WeightedLogrankResult, cox_regression, weighted_logrank
from .evalue import EValueResult, e_value, rare_outcome
from .formatting import (
    format_count_percent,
    format_estimate_ci,
    format_hr,
    format_mean_sd,
    format_median_ci,
    format_p,
)
from .iptw import (
    ALIAS_CONSTANT,
    ALIAS_LINEAR_COMBINATION,
    ALIAS_SINGLE_GROUP_LEVEL,
    ESTIMANDS,
    PropensityResult,
)
from .iptw import balance_table, propensity_weights, quantile_type3, weight_summary
from .km import KaplanMeier, Quantile, SurvivalAt, SurvivalSummary, kaplan_meier, reverse_km_follow_up
from .models import CoxScreeningResult, binary_indicator, cox_screening
from .rmst import RMSTComparison, RMSTResult, rmst, rmst_compare
from .sequential import (
    EventProjection,
    GroupFollowUp,
    SpendingBoundaries,
    conditional_power,
    expected_events,
    months_to_target,
    project_events,
    repeated_ci,
    schoenfeld_events,
    spending_boundaries,
)
from .table1 import build_table1
from .tests import (
    LandmarkResult,
    LogrankResult,
    ProportionTestResult,
    TTestResult,
    compare_means,
    compare_proportions,
    contingency_table,
    fisher_exact_rxc,
    landmark_test,
    logrank,
    logrank_z,
)
from .zph import cox_zph

__all__ = [
    "ALIAS_CONSTANT",
    "ALIAS_LINEAR_COMBINATION",
    "ALIAS_SINGLE_GROUP_LEVEL",
    "ESTIMANDS",
    "EValueResult",
    "CoxFitError",
    "CoxScreeningResult",
    "EventProjection",
    "GroupFollowUp",
    "KaplanMeier",
    "LandmarkResult",
    "LogrankResult",
    "PropensityResult",
    "ProportionTestResult",
    "Quantile",
    "RMSTComparison",
    "RMSTResult",
    "SpendingBoundaries",
    "SurvivalAt",
    "SurvivalSummary",
    "TTestResult",
    "WeightedLogrankResult",
    "balance_table",
    "binary_indicator",
    "build_table1",
    "compare_means",
    "compare_proportions",
    "conditional_power",
    "contingency_table",
    "cox_regression",
    "cox_screening",
    "cox_zph",
    "expected_events",
    "e_value",
    "fisher_exact_rxc",
    "format_count_percent",
    "format_estimate_ci",
    "format_hr",
    "format_mean_sd",
    "format_median_ci",
    "format_p",
    "kaplan_meier",
    "landmark_test",
    "logrank",
    "logrank_z",
    "months_to_target",
    "project_events",
    "propensity_weights",
    "quantile_type3",
    "repeated_ci",
    "rare_outcome",
    "reverse_km_follow_up",
    "rmst",
    "rmst_compare",
    "schoenfeld_events",
    "spending_boundaries",
    "weight_summary",
    "weighted_logrank",
]
