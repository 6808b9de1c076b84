"""Compile every Triton kernel for a GPU architecture without a GPU (to the CUDA binary).

The interpreter (``TRITON_INTERPRET=1``) checks what the kernels compute but not that they
compile: it runs them as NumPy and accepts things the compiler rejects (method calls on
arguments Triton specialises to constants, mixed-type loop-carried values, …). This runs the
real ops on small CPU tensors with every kernel launch replaced by ``triton.compile`` for
``GPUTarget("cuda", arch, 32)`` (through ``ptxas``, shipped in the triton wheel), with the
same argument specialisation a launch would use. Nothing is executed, so outputs are garbage.

    python -m audiomask.kernels.compile_check            # sm_90 (H100/H200)
    python -m audiomask.kernels.compile_check --arch 80  # A100

Must run in a process where Triton is not in interpreter mode (it unsets
``TRITON_INTERPRET`` itself, before loading the kernels).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability ×10 (default 90)")
    parser.add_argument("--quick", action="store_true", help="one variant per kernel and norm")
    args = parser.parse_args(argv)
    os.environ.pop("TRITON_INTERPRET", None)

    import torch
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import JITFunction, create_function_from_signature

    from audiomask import accel, kernels
    from audiomask.kernels import _triton

    if _triton.INTERPRETED:
        print("audiomask.kernels was loaded under TRITON_INTERPRET=1; run in a fresh process", file=sys.stderr)
        return 2
    target = GPUTarget("cuda", args.arch, 32)
    backend = make_backend(target)
    compiled: dict = {}

    def compile_only(fn: JITFunction, grid):
        def launch(*a, **kw):
            binder = create_function_from_signature(fn.signature, fn.params, backend)
            bound, spec, options = binder(*a, **kw)
            options, signature, constexprs, attrs = fn._pack_args(backend, kw, bound, spec, options)
            key = (fn.__name__, str(spec))
            if key not in compiled:
                t0 = time.perf_counter()
                triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target,
                               options=options.__dict__)
                compiled[key] = time.perf_counter() - t0
        return launch

    t0 = time.perf_counter()
    torch.manual_seed(0)
    original = kernels.use_triton, JITFunction.__getitem__
    kernels.use_triton = lambda x: True  # CPU tensors stand in for CUDA ones
    JITFunction.__getitem__ = compile_only  # every kernel[grid](...) compiles instead of launching
    try:
        with accel.force("triton"):  # every kernel, whatever the dispatch policy would choose
            C = 16
            shapes = [37] if args.quick else [37, 1]
            for norm in kernels.NORMS:
                for per_channel in ([False] if args.quick else [False, True]):
                    for T in shapes:
                        x = torch.randn(2, C, T, requires_grad=True)
                        w, b = torch.randn(C, 1, 3, requires_grad=True), torch.randn(C, requires_grad=True)
                        slope = torch.rand(C if per_channel else 1, requires_grad=True)
                        gamma, beta = torch.randn(C, requires_grad=True), torch.randn(C, requires_grad=True)
                        kernels.dwconv_prelu_norm(x, w, b, 2, (2, 2), slope, gamma, beta, norm, 1e-8).sum().backward()
                        kernels.prelu_norm(x, slope, gamma, beta, norm, 1e-8).sum().backward()
            convs = [(True, True, 1, False), (False, False, 2, False)]
            if not args.quick:
                convs += [(False, False, 1, True), (True, False, 1, False)]
            for channels_last, residual, groups, bias in convs:
                shape = (2, 37, 8 * groups) if channels_last else (2, 8 * groups, 37)
                x = torch.randn(*shape, requires_grad=True)
                w = torch.randn(8, groups, 3 if args.quick else 17, requires_grad=True)
                bb = torch.randn(8, requires_grad=True) if bias else None
                pad = (w.shape[-1] // 2,) * 2
                kernels.depthwise_conv1d(x, w, bb, 1, pad, channels_last, residual).sum().backward()
                if not args.quick:  # bfloat16 storage
                    xb = x.detach().bfloat16().requires_grad_(True)
                    kernels.depthwise_conv1d(xb, w, bb, 1, pad, channels_last, residual).float().sum().backward()
    finally:
        kernels.use_triton, JITFunction.__getitem__ = original
    print(f"{len(compiled)} kernel variants compiled for sm_{args.arch} in {time.perf_counter() - t0:.1f} s "
          f"({len({k[0] for k in compiled})} kernels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
