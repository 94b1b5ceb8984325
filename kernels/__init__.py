"""Triton kernels of fastmotive (installed as ``fastmotive.kernels``): `copy_runs_kernel`, the switch's copy of
a plan's runs (launched by `fastmotive.core.kernel_launch.copy_runs`), and its plain-torch reference. Importing
needs triton; on a CPU set ``TRITON_INTERPRET=1`` before triton is first imported to run them in the
interpreter."""
from .run_copy import copy_runs_kernel, copy_runs_reference

__all__ = ["copy_runs_kernel", "copy_runs_reference"]
