"""Statistics layer with R ``survival`` parity (pure functions over pandas / NumPy).

No Dagster and no DuckDB here. Public API (``from haic_pipeline.stats import ...``):

* :func:`kaplan_meier`, :func:`reverse_km_follow_up` -> :class:`KaplanMeier`   (km.py)
* :func:`logrank`, :func:`landmark_test`, :func:`compare_means`,
  :func:`compare_proportions`, :func:`fisher_exact_rxc`                      (tests.py)
* :func:`cox_regression`, :class:`CoxFitError`                               (cox.py)
* :func:`cox_screening` (univariable screening + multivariable model of study_spec §3),
  :func:`binary_indicator`                                                   (models.py)
* :func:`build_table1` (Table 1 / ``analysis.baseline_characteristics``)     (table1.py)
* publication formatting: :func:`format_median_ci`, :func:`format_hr`,
  :func:`format_mean_sd`, :func:`format_p`, :func:`format_count_percent`,
  :func:`format_estimate_ci`                                                 (formatting.py)

What uses what:

* NumPy (own code): Kaplan-Meier (lifelines' CI is R's "log-log", not R's default "log",
  and its median has no midpoint rule), log-rank (lifelines agrees with R but is slower),
  landmark test, Cox (lifelines agrees only with tightened convergence and is too slow at
  1,000,000 rows), the exact r x c Fisher test (SciPy's r x c Fisher is Monte-Carlo).
* SciPy: Student's t (``ttest_ind(equal_var=True)``), Pearson chi-square
  (``chi2_contingency(correction=False)``), normal / chi-square tail probabilities.
* lifelines: used in the test suite as an independent second implementation (log-rank,
  Efron Cox with tight convergence) and to show where its defaults differ from R.
"""

from .cox import CoxFitError, cox_regression
from .formatting import (
    format_count_percent,
    format_estimate_ci,
    format_hr,
    format_mean_sd,
    format_median_ci,
    format_p,
)
from .km import KaplanMeier, Quantile, SurvivalAt, SurvivalSummary, kaplan_meier, reverse_km_follow_up
from .models import CoxScreeningResult, binary_indicator, cox_screening
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
)

__all__ = [
    "CoxFitError",
    "CoxScreeningResult",
    "KaplanMeier",
    "LandmarkResult",
    "LogrankResult",
    "ProportionTestResult",
    "Quantile",
    "SurvivalAt",
    "SurvivalSummary",
    "TTestResult",
    "binary_indicator",
    "build_table1",
    "compare_means",
    "compare_proportions",
    "contingency_table",
    "cox_regression",
    "cox_screening",
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
    "reverse_km_follow_up",
]
