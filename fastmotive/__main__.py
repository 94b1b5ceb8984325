"""The fastmotive command line as a module: ``python -m fastmotive`` (and ``torchrun -m fastmotive``)."""
import sys

from fastmotive.cli.main import main

sys.exit(main())
