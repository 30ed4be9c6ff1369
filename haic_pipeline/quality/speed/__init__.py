"""The gate's speed layer: the same counts as the plain `validate.FrameSource`, for a large history.

`FastSource` is the one entry point: the core's dispatch (`validate.validate`) with faster
readers and runners than the plain `FrameSource`, which `HAIC_DQ_FAST=0` uses instead (a test
compares the verdicts of both, rule by rule and drop by drop). What it adds:

- several drops per ~2 M-row frame, each drop's counts attributed from GX's own unexpected-row
  positions (`attribution.py`);
- text as ENUM categoricals and the dtypes GX's pandas engine has fast paths for, the staging
  frame in parts split on the key's hash (`frames.py`);
- GX in worker processes for a large backlog, DuckDB read in the parent only (`parallel.py`);
  GX imported in a thread while other work runs (`haic_pipeline/preload.py`).
"""

from __future__ import annotations

from haic_pipeline.quality import frames as plain   # not `frames`: the name of this package's own module
from haic_pipeline.quality import store
from haic_pipeline.quality.speed import frames as fast
from haic_pipeline.quality.speed import parallel
from haic_pipeline.quality.speed.attribution import run_members
from haic_pipeline.quality.validate import FrameSource


class FastSource(FrameSource):
    """The core's frames (validate.validate), read and run faster: several drops per ~2 M-row
    frame with each row's drop as a code, text as ENUM categoricals, the staging table in parts
    split on the key's hash; GX in worker processes when the pending rows are many, else here."""

    def drop_rows(self, c, rules):
        known = fast.typed_text_values(self.con, c, rules, self.ids)
        return fast.iter_labelled(self.con, plain.drop_frame_sql(c, rules), self.ids, known=known)

    def drop_patients(self, c, rules):
        return fast.iter_labelled(self.con, plain.drop_patient_frame_sql(c, rules), self.ids)

    def patients(self, sql, n_params):
        return fast.iter_labelled(self.con, sql, self.ids, n_params)

    def staging(self, c):
        return fast.staging_frames(self.con, c)

    def run(self, chunks, on_result) -> None:
        if parallel.wanted(store.delivered_rows(self.con, self.ids, [c.file for c in self.contracts.values()])):
            parallel.validate_chunks(chunks, on_result)
        else:
            for scope, members, df, labels, codes in chunks:
                on_result(scope, members, labels, run_members(members, scope, df, codes))
