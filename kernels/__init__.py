"""Triton kernels of fastmotive (installed as ``fastmotive.kernels``). Importing needs triton; on a CPU set
``TRITON_INTERPRET=1`` before triton is first imported to run them in the interpreter."""
from .segment_copy import segment_copy, segment_copy_kernel, segment_copy_reference

__all__ = ["segment_copy", "segment_copy_kernel", "segment_copy_reference"]
