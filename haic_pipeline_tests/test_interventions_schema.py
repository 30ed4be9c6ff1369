"""ops.interventions keeps a waiver's failing rules in a column of their own (`rules`), the reason
holds the engineer's words only; a warehouse written before the column existed is brought to the
same shape when the table is next ensured, and nothing in it is lost."""

from __future__ import annotations

import duckdb

from haic_pipeline.warehouse import interventions
from haic_pipeline.warehouse.schema import ensure_ops

OLD_DDL = """CREATE TABLE ops.interventions (action VARCHAR NOT NULL, extract_id VARCHAR NOT NULL,
    check_name VARCHAR, reason VARCHAR NOT NULL, actor VARCHAR NOT NULL, recorded_at TIMESTAMP NOT NULL)"""


def test_a_waiver_recorded_in_the_old_format_gets_its_rules_column(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE SCHEMA ops")
    con.execute(OLD_DDL)
    con.execute("""INSERT INTO ops.interventions VALUES
        ('retract', 'E1', NULL, 'vendor sent the wrong month [rules: none]?', 'ana', '2026-01-01 02:00'),
        ('waive', 'E2', 'labs_error_rules', 'known ALB units [rules: unit_for_test, orphan_patient]', 'ana',
         '2026-01-02 02:00'),
        ('revoke', 'E2', 'labs_error_rules', 'vendor fixed it', 'ana', '2026-01-03 02:00'),
        ('waive', 'E3', 'assessments_error_rules', 'ECOG 7 known [rules: ecog_range]', 'bo', '2026-01-04 02:00')""")
    ensure_ops(con)
    rows = con.execute("SELECT action, extract_id, reason, rules FROM ops.interventions ORDER BY recorded_at").fetchall()
    assert rows == [
        ("retract", "E1", "vendor sent the wrong month [rules: none]?", None),   # not a waiver's suffix: kept
        ("waive", "E2", "known ALB units", ["unit_for_test", "orphan_patient"]),
        ("revoke", "E2", "vendor fixed it", None),
        ("waive", "E3", "ECOG 7 known", ["ecog_range"]),
    ]
    assert interventions.active_waivers(con)[("assessments_error_rules", "E3")]["rules"] == ["ecog_range"]
    ensure_ops(con)            # again: nothing changes
    assert con.execute("SELECT action, extract_id, reason, rules FROM ops.interventions ORDER BY recorded_at"
                       ).fetchall() == rows
