import sys

from haic_pipeline.cli.main import main

# guarded: worker processes (quality/parallel.py, spawned) import the main module again
if __name__ == "__main__":
    sys.exit(main())
