"""HAIC study platform: EMR extract drops -> DuckDB warehouse -> survival analysis."""

__version__ = "0.1.0"
