"""Compiles the Triton kernels to GPU machine code (cubin) without a GPU: every code path the interpreter runs in
Python must also pass Triton's compiler (types, constexpr branches, loops).  Run by test_norms_triton.py in a
subprocess, because TRITON_INTERPRET=1 (which the tests' process sets) turns the kernels into interpreted functions.

    python tests/norms/triton_gpu_compile.py [ARCH ...]     (default: 80 90, i.e. A100 and H100/H200)
"""
import itertools
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from normexp.norms.triton_kernels import rownorm_backward, rownorm_forward

FORWARD = dict(pointers=("X", "Y", "W", "B", "S"), ints=("H", "m"), floats=("divisor", "eps", "C", "k"))
BACKWARD = dict(pointers=("G", "X", "S", "W", "DX", "DW", "DB"), ints=("R", "H", "m", "rows_per_program"),
                floats=("divisor", "C", "k"))


def compile_kernel(fn, args, constants, dtype, arch):
    io = {"X": dtype, "Y": dtype, "G": dtype, "DX": dtype}
    signature = {name: (f"*{io.get(name, 'fp32')}" if name in args["pointers"] else "i32" if name in args["ints"]
                        else "fp32" if name in args["floats"] else "constexpr") for name in fn.arg_names}
    warps = 16 if constants["BLOCK"] >= 8192 else 4
    return triton.compile(ASTSource(fn, signature, constants), target=GPUTarget("cuda", arch, 32),
                          options=dict(num_warps=warps))


def main(archs):
    count = 0
    for arch, dtype, one in itertools.product(archs, ("fp32", "bf16"), (True, False)):
        block = 1024 if one else 8192
        for center, inside, affine in itertools.product((True, False), (True, False), ("wb", "w", "", "ada")):
            if dtype == "bf16" and not (center and inside):  # bfloat16 changes only loads and stores
                continue
            constants = dict(CENTER=center, INSIDE=inside, HAS_W="w" in affine, HAS_B="b" in affine,
                             ADA=affine == "ada", BLOCK=block, ONE_BLOCK=one)
            compile_kernel(rownorm_forward, FORWARD, constants, dtype, arch)
            count += 1
        for affine, mean_path, var_path in itertools.product(("wb", "w", "", "ada"), (True, False), (True, False)):
            if dtype == "bf16" and not (mean_path and var_path):
                continue
            constants = dict(HAS_W="w" in affine, HAS_B="b" in affine, ADA=affine == "ada", MEAN_PATH=mean_path,
                             VAR_PATH=var_path, BLOCK=block, ONE_BLOCK=one)
            compile_kernel(rownorm_backward, BACKWARD, constants, dtype, arch)
            count += 1
    print(f"compiled {count} kernels for sm_{'/'.join(map(str, archs))}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [80, 90])
