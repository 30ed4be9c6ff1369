import sys

from haic_pipeline.cli.main import main

sys.exit(main())
