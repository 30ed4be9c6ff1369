"""`haic` command line: run the pipeline once, write demo drops, show status, open SQL."""

from haic_pipeline.cli.main import main, program  # noqa: F401
