"""The switch kernel compiled ahead of time for Hopper (sm_90) and Ampere (sm_80), without a GPU, in every
specialisation the switch launches (1 to 4 rows, 32- and 16-bit arena views; up and down share one kernel),
and what the design promises read off the PTX and the cubin: 16-byte vector loads and stores on aligned
runs, scalar ones on the rest, 64-bit row offsets, no shared memory, no local memory (no spills).

The compiles run in one child process without TRITON_INTERPRET (the tests' own process runs kernels in the
interpreter, whose functions cannot be compiled)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[2]
ARCHS = (90, 80)
SPECIALISATIONS = [(rows, bits) for rows in (1, 2, 3, 4) for bits in (32, 16)]

COMPILE = r'''
import json, os, re, subprocess, sys, tempfile
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from fastmotive.kernels import copy_runs_kernel

def compile_for(arch, rows, bits):
    vec = 128 // bits
    block = 32 * vec   # the launcher's smallest block: one warp of 16-byte vectors
    names = copy_runs_kernel.arg_names
    signature = {"data_ptr": f"*i{bits}", "runs_ptr": "*i64", "n_param_runs": "i32", "row_stride": "i32",
                 "src_col": "i32", "N_ROWS": "constexpr", "BLOCK": "constexpr", "VEC": "constexpr"}
    # what the launcher passes: 16-byte aligned tensors, an arena row a multiple of 16 columns
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in ("data_ptr", "runs_ptr", "row_stride")}
    source = ASTSource(fn=copy_runs_kernel, signature=signature,
                       constexprs={"N_ROWS": rows, "BLOCK": block, "VEC": vec}, attrs=attrs)
    return triton.compile(source, target=GPUTarget("cuda", arch, 32),
                          options={"num_warps": max(1, block // (32 * vec))})

tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
out = {}
for arch, rows, bits in json.loads(sys.argv[1]):
    try:
        k = compile_for(arch, rows, bits)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        break
    usage = None
    if os.path.exists(tool):
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(k.asm["cubin"]); f.flush()
            usage = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True).stdout
    out[f"{arch}-{rows}-{bits}"] = {"ptx": k.asm["ptx"], "ttir": k.asm["ttir"], "shared": k.metadata.shared,
                                     "usage": usage}
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def compiled() -> dict:
    specs = [(arch, rows, bits) for arch in ARCHS for rows, bits in SPECIALISATIONS]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", COMPILE, json.dumps(specs)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600, check=False)
    if done.returncode:
        pytest.fail(f"the compile process failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout)
    if "error" in out:
        pytest.skip(f"the installed triton cannot target CUDA here: {out['error']}")
    return out


def accesses(ptx: str) -> list[str]:
    return re.findall(r"\b((?:ld|st)\.global(?:\.v\d)?\.b\d+)", ptx)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("rows,bits", SPECIALISATIONS)
def test_ptx_has_vector_and_scalar_paths_and_no_shared_or_local_memory(compiled, arch, rows, bits):
    kernel = compiled[f"{arch}-{rows}-{bits}"]
    found = accesses(kernel["ptx"])
    scalar = f"b{bits}"
    # aligned bodies move 16 bytes a lane; misaligned runs and edges one element; one store per copied row
    assert found.count("st.global.v4.b32") == rows and found.count(f"st.global.{scalar}") == rows, found
    assert "ld.global.v4.b32" in found and f"ld.global.{scalar}" in found, found
    assert ".local" not in kernel["ptx"] and ".shared" not in kernel["ptx"] and kernel["shared"] == 0


@pytest.mark.parametrize("arch", ARCHS)
def test_row_offsets_are_64_bit(compiled, arch):
    ttir = compiled[f"{arch}-3-32"]["ttir"]
    offsets = re.findall(r"tt\.addptr %data_ptr, %\S+ : !tt\.ptr<i32>, (i\d+)", ttir)
    assert offsets and set(offsets) == {"i64"}, offsets   # no int32 row * stride that wraps past 2^31


@pytest.mark.parametrize("arch", ARCHS)
def test_cubin_has_no_spills(compiled, arch):
    usage = compiled[f"{arch}-4-32"]["usage"]
    if usage is None:
        pytest.skip("no cuobjdump beside this triton to read the cubin's resource usage")
    found = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", usage)
    assert found, usage
    regs, stack, shared, local = map(int, found.groups())
    assert stack == shared == local == 0 and regs <= 128, usage
