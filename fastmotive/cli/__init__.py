"""The ``fastmotive`` command line: `main` (train, export, eval, map, recipes) and the experiments' commands
(`experiments`: compare, transfer, tune-k). It only parses, then calls the library."""
