"""R parity of the robustness analyses of study_spec §5.6 on ``lung``: every number of the
shared ``reference/r_beyond/lung_robustness.json`` (r_beyond.R sections (7)-(11): overlap
weights and their balance, overlap-weighted KM / Cox / robust score / RMST, cox.zph of the
weighted fits, E-values, truncation counts, the unadjusted Cox on the modelled patients) is
recomputed from ``lung.csv`` and compared. The walk fails on any key of the JSON that is not
computed, so a new reference key cannot go untested.

Tolerances: 1e-6 relative; Cox-model quantities and what derives from them (Cox, cox.zph,
E-values) 1e-5; counts, df, medians and ``outcome_rare`` exactly; the SMDs after overlap
weighting are 0 up to 1e-6 (absolute; R's are rounding noise around 0).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from .robustness_compute import compute_robustness
from .stats_reference import beyond_dir, compare_sections

EXACT_KEYS = {"median", "median_lower", "median_upper", "n", "df", "clipped_low", "clipped_high",
              "outcome_rare", "covariates", "modelled", "tau", "landmark"}
COX_SECTIONS = {"overlap_cox", "iptw_cox_zph", "overlap_cox_zph", "unadjusted_cox", "iptw_evalue",
                "overlap_evalue", "iptw_evalue_rare", "overlap_evalue_rare", "iptw_cox", "cox_zph",
                "noevent_cox", "aliased_zph"}
ZERO_SECTIONS = {"overlap_smd"}
ZERO_TOL = 1e-6


def _zero_section(section, block, got, failures, counter) -> bool:
    """The SMDs after overlap weighting: 0 to ZERO_TOL on both sides (their relative error means
    nothing)."""
    if section not in ZERO_SECTIONS:
        return False
    for key, val in block.items():
        counter.append(f"{section}.{key}")
        if key not in got:
            failures.append(f"{section}.{key}: in the R reference but not computed")
        elif not (abs(val) <= ZERO_TOL and abs(got[key]) <= ZERO_TOL):
            failures.append(f"{section}.{key}: R {val!r}, got {got[key]!r} (must be 0)")
    return True


def check(ref: dict, got: dict) -> tuple[list, list]:
    """Every leaf of ``ref`` compared with ``got`` (missing sections and keys are failures)."""
    return compare_sections(ref, got, lambda s: 1e-5 if s in COX_SECTIONS else 1e-6, EXACT_KEYS, _zero_section)


def leaves(node) -> int:
    return sum(leaves(v) for v in node.values()) if isinstance(node, dict) else 1


def _lung() -> tuple[pd.DataFrame, dict, dict]:
    d = beyond_dir()
    if not (d / "lung_robustness.json").is_file():
        pytest.skip(f"R reference not found: {d / 'lung_robustness.json'}")
    frame = pd.read_csv(d / "lung.csv")
    base = json.loads((d / "lung.json").read_text(encoding="utf-8"))
    ref = json.loads((d / "lung_robustness.json").read_text(encoding="utf-8"))
    return frame, base, ref


def test_every_key_of_lung_robustness_matches_r() -> None:
    frame, base, ref = _lung()
    got = compute_robustness(frame, base["covariates"], base["tau"], base["landmark"])
    failures, counter = check(ref, got)
    assert not failures, f"{len(failures)} mismatches:\n" + "\n".join(failures)
    assert len(counter) == leaves(ref) == 61  # every leaf of lung_robustness.json is compared
    assert set(got) == set(ref)  # and nothing is computed that R does not check


def test_the_robustness_walk_detects_a_wrong_number() -> None:
    frame, base, ref = _lung()
    got = compute_robustness(frame, base["covariates"], base["tau"], base["landmark"])
    got["overlap_km"]["0"]["std_err"] *= 1 + 2e-6
    got["overlap_cox"]["robust_score"] *= 1 + 2e-5
    got["overlap_smd"]["age65"] = 2e-6
    got["truncation"]["clipped_high"] = 0
    got["outcome_rare"] = True
    del got["iptw_evalue"]["e_value_ci"]
    del got["unadjusted_cox"]
    failures, _ = check(ref, got)
    joined = "\n".join(failures)
    for path in ("overlap_km.0.std_err", "overlap_cox.robust_score", "overlap_smd.age65",
                 "truncation.clipped_high", "outcome_rare",
                 "iptw_evalue.e_value_ci: in the R reference but not computed",
                 "unadjusted_cox: reference section not computed"):
        assert path in joined, path
    assert len(failures) == 7


@pytest.mark.parametrize("estimand,key", [("ATE", "iptw_cox_zph"), ("ATO", "overlap_cox_zph")])
def test_weighted_cox_zph_fits_the_weighted_model_itself(estimand, key) -> None:
    """cox_zph(weights=) without the estimates fits the weighted model (R cox.zph of
    coxph(Surv ~ arm, weights = w, robust = TRUE); the robust variance does not enter it)."""
    from haic_pipeline.stats import cox_zph, propensity_weights

    frame, base, ref = _lung()
    w = propensity_weights(frame, "arm", base["covariates"], estimand=estimand).weights
    z = cox_zph(frame.assign(w=w), "time", "event", ["arm"], weights="w").set_index("term")
    assert z.loc["arm", "chisq"] == pytest.approx(ref[key]["chisq"], rel=1e-5)
    assert z.loc["arm", "p_value"] == pytest.approx(ref[key]["p_value"], rel=1e-5)
    assert z.loc["GLOBAL", "chisq"] == pytest.approx(z.loc["arm", "chisq"], rel=1e-12)
    unweighted = cox_zph(frame, "time", "event", ["arm"]).set_index("term")
    assert abs(unweighted.loc["arm", "chisq"] / ref[key]["chisq"] - 1) > 1e-3  # the weights matter
