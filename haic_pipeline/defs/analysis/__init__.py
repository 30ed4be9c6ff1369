"""Dagster wiring of the analysis layer (haic_pipeline.analysis): tables, figures, report."""
