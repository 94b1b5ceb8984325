"""The fastmotive command line as a module: ``python -m fastmotive`` (and ``torchrun -m fastmotive``)."""
from fastmotive.cli.main import run

run()
