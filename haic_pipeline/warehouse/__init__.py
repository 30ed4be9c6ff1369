"""The DuckDB warehouse: schemas, DDL and the staging models compiled from the contracts."""
