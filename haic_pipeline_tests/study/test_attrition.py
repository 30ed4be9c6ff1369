"""analysis.attrition: CONSORT flow in §1 exclusion order, from all patients to the included."""

import duckdb
import pytest

from haic_pipeline.study import EXCLUSION_ORDER, build_attrition, build_cohort
from haic_pipeline.study.build import sql_path

from .conftest import CUTOFF1, Drop


def test_attrition_flow(study, con):
    d = Drop()
    for i in range(4):
        d.eligible(f"1000000{i}")
    d.eligible("10000010", consent_status="withdrawn")
    d.patient("10000011").patient("10000012")                                    # no_haic x2
    d.eligible("10000013", index="2021-06-01")                                   # index_before_study_start
    d.eligible("10000014").course("10000014", "OTHER", "2022-01-01", "2022-02-01", "TOXICITY")
    d.eligible("10000015", vital=False)                                          # no_follow_up
    t = study(d)
    got = con.execute("SELECT step, reason, n_excluded, n_remaining, data_cutoff::VARCHAR FROM analysis.attrition "
                      "ORDER BY step").fetchall()
    assert got == [
        (0, "all_patients", None, 10, CUTOFF1),
        (1, "consent_withdrawn", 1, 9, CUTOFF1),
        (2, "no_haic", 2, 7, CUTOFF1),
        (3, "index_before_study_start", 1, 6, CUTOFF1),
        (4, "index_after_cutoff", 0, 6, CUTOFF1),
        (5, "age_under_18", 0, 6, CUTOFF1),
        (6, "prior_other_systemic", 1, 5, CUTOFF1),
        (7, "no_follow_up", 1, 4, CUTOFF1),
        (8, "included", None, 4, CUTOFF1),
    ]
    assert [s["reason"] for s in t.results[2].steps][1:-1] == list(EXCLUSION_ORDER)
    assert t.results[0].included == 4 == con.execute("SELECT count(*) FROM staging.endpoints").fetchone()[0]
    assert t.results[2].metadata()["steps"][-1] == {"step": 8, "reason": "included", "n_excluded": None,
                                                    "n_remaining": 4}


def test_failed_build_keeps_the_previous_table(study, con):
    study(Drop().eligible("10000001"))
    before = con.execute("SELECT * FROM staging.cohort").fetchall()
    con.execute("ALTER TABLE staging.vital_status RENAME TO vital_status_gone")
    try:
        with pytest.raises(duckdb.Error):
            build_cohort(con)
    finally:
        con.execute("ALTER TABLE staging.vital_status_gone RENAME TO vital_status")
    assert con.execute("SELECT * FROM staging.cohort").fetchall() == before
    assert build_attrition(con).steps[-1]["n_remaining"] == 1


def test_sql_refuses_to_run_without_parameters(study, con):
    """Run by hand without the parameters, the SQL fails loudly instead of computing nonsense."""
    study(Drop().eligible("10000001"))
    con.execute("RESET VARIABLE study_start")
    with pytest.raises(duckdb.Error, match="study_start is not set"):
        con.execute(sql_path("cohort").read_text())
