"""audiomask.kernels: every Triton kernel equals its PyTorch reference, forward and gradients.

Without a GPU the Triton code runs on CPU tensors in Triton's interpreter: this module sets
``TRITON_INTERPRET=1`` before ``audiomask.kernels._triton`` is first imported (Triton decides
when a kernel is decorated whether it is interpreted; asserted below) and the dispatch is
forced with ``accel.force("triton")``. On a CUDA machine the same tests run the compiled kernels on
the GPU. The references themselves are checked against the modules they stand for.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib

import pytest
import torch
import torch.nn.functional as F

import audiomask
from audiomask import accel, kernels
from audiomask.maskers.tcn import DepthwiseTCNBlock
from audiomask.nn.ffconv import FFConvM
from audiomask.nn.fsmn import DilatedDenseFSMN

ON_GPU = torch.cuda.is_available() and not kernels.interpreting()
DEVICE = "cuda" if ON_GPU else "cpu"


def _load_triton_kernels():
    if not ON_GPU:
        # Triton reads this when the kernels are decorated and again when they launch, so it
        # stays set for the session (no other test uses Triton)
        os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton  # noqa: F401
    except ImportError:
        return None
    from audiomask.kernels import _triton

    return _triton


TRITON = _load_triton_kernels()
needs_triton = pytest.mark.skipif(TRITON is None, reason="triton not installed (pip install 'audiomask[kernels]')")


def triton_path():
    """The Triton path for this machine's test tensors (forced: no policy; on CPU the interpreter)."""
    return accel.force("triton")


def _close(got: torch.Tensor, want: torch.Tensor, rel: float = 1e-4, what: str = "") -> None:
    err = (got.double() - want.double()).abs().max().item()
    scale = want.double().abs().max().item()
    assert err <= rel * scale + 1e-6, f"{what}: max error {err:.3g} vs max |ref| {scale:.3g}"


#: float32's unit roundoff: the relative size of the input perturbation that sets the noise floor
ROUNDOFF = 2.0 ** -24


def _as_leaves(inputs: dict, dtype: torch.dtype, noise: torch.Generator | None = None) -> dict:
    """Fresh leaves of ``dtype`` on ``DEVICE`` for every tensor input; with ``noise``, each
    element moved by about one float32 rounding (relative ``ROUNDOFF``)."""
    out = {}
    for k, v in inputs.items():
        if torch.is_tensor(v):
            v = v.detach().to(dtype)
            if noise is not None:
                v = v * (1 + ROUNDOFF * torch.randn(v.shape, generator=noise, dtype=dtype))
            v = v.to(DEVICE).requires_grad_(True)
        out[k] = v
    return out


def _run(fn, leaves: dict, fused: bool, seed: int) -> dict:
    """Output and every input gradient of ``fn(**leaves)`` on the Triton (``fused``) or the
    reference path, for a fixed random output gradient (drawn in float32,
    so every precision sees the same one)."""
    with triton_path() if fused else accel.force("reference"):
        y = fn(**leaves)
        dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(y.dtype).to(DEVICE)
        y.backward(dy)
    got = {"output": y.detach()}
    got.update({f"d{k}": v.grad for k, v in leaves.items() if torch.is_tensor(v)})
    return got


#: float64 runs on inputs moved by one float32 rounding, whose largest movement is the noise floor
NOISE_SAMPLES = 3


def assert_as_accurate_as_eager(eager: dict, fused: dict, exact: dict, moved: list, factor: float = 2.0) -> dict:
    """Each tensor of the fused float32 run is within ``factor`` times the error of the eager
    float32 run, both measured against the float64 reference (``exact``; max abs error per
    tensor). Floor: how far the float64 result itself moves when its inputs move by one float32
    rounding (the largest over the runs ``moved``) — a sum that cancels (a scalar slope's
    gradient) has an error of that size in any float32 evaluation, and eager's can be smaller
    only by luck (one such movement ranged over 15x across six draws). Returns the ratios."""
    ratios = {}
    for k, want in exact.items():
        assert fused[k] is not None, f"no gradient for {k}"
        want = want.double()
        e_fused = (fused[k].double() - want).abs().max().item()
        e_eager = (eager[k].double() - want).abs().max().item()
        floor = max((m[k].double() - want).abs().max().item() for m in moved)
        ratios[k] = e_fused / max(e_eager, floor, 1e-30)
        assert ratios[k] <= factor, (f"{k}: fused float32 error {e_fused:.3g} > {factor} x max(eager float32 "
                                  f"error {e_eager:.3g}, float32 noise floor {floor:.3g}); max |ref| "
                                  f"{want.abs().max().item():.3g}")
    return ratios


#: per-tensor bound on (fused error) / max(eager error, noise floor) in the small-shape tests:
#: there both errors are rounding noise of the same size and their ratio is heavy-tailed
#: (median 0.7-1.1, largest seen ~10 over 8 seeds x 15 shapes x 3 norms); the factor-2 check
#: is ``test_fused_gradients_as_accurate_as_eager_at_scale``, where a bias would dominate
SMALL_SHAPE_FACTOR = 20.0


def _compare(fn, inputs: dict, seed: int = 0, factor: float = SMALL_SHAPE_FACTOR) -> dict:
    """``fn(**inputs)`` on the Triton path against the reference path: output and the gradients
    of every floating tensor input, for the same random output gradient — the output within
    float32 rounding of the reference's, and every tensor as close to the float64 reference
    as eager float32 is (:func:`assert_as_accurate_as_eager`). Returns the error ratios."""
    y_ref = _run(fn, _as_leaves(inputs, torch.float32), False, seed)
    y_tri = _run(fn, _as_leaves(inputs, torch.float32), True, seed)
    assert y_tri["output"].shape == y_ref["output"].shape and y_tri["output"].dtype == y_ref["output"].dtype
    _close(y_tri["output"], y_ref["output"], what="output")
    exact = _run(fn, _as_leaves(inputs, torch.float64), False, seed)
    moved = [_run(fn, _as_leaves(inputs, torch.float64, torch.Generator().manual_seed(seed + i)), False, seed)
             for i in range(1, 1 + NOISE_SAMPLES)]
    return assert_as_accurate_as_eager(y_ref, y_tri, exact, moved, factor)


@pytest.fixture
def counted(monkeypatch):
    """Counts calls into the Triton ops (so a silent fallback would fail)."""
    calls = {"conv_prelu_norm": 0, "depthwise_conv1d": 0}
    for name in calls:
        original = getattr(TRITON, name)

        def op(*a, _name=name, _original=original):
            calls[_name] += 1
            return _original(*a)

        monkeypatch.setattr(TRITON, name, op)
    return calls


# ------------------------------------------------------------------------------------------
# the references are the modules' math
# ------------------------------------------------------------------------------------------
def _randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=g) * 1.5 - 0.5)
    return module


@pytest.mark.parametrize("norm,causal", [("gLN", False), ("cLN", True), ("chanLN", True), ("chanLN", False)])
def test_references_equal_the_tcn_block(norm, causal):
    block = _randomize(DepthwiseTCNBlock(8, 12, 8, 3, 2, norm, causal))
    x = torch.randn(2, 8, 41)
    u = block.in_conv(x)
    y = block.in_norm(block.in_act(u))
    ref = kernels.reference_prelu_norm(u, block.in_act.weight, block.in_norm.weight, block.in_norm.bias,
                                       norm, block.in_norm.eps)
    assert torch.equal(ref, y)
    want = block.dw_norm(block.dw_act(block.dw_conv(F.pad(y, block.padding))))
    got = kernels.reference_dwconv_prelu_norm(y, block.dw_conv.weight, block.dw_conv.bias, block.dilation,
                                              block.padding, block.dw_act.weight, block.dw_norm.weight,
                                              block.dw_norm.bias, norm, block.dw_norm.eps)
    assert torch.equal(got, want)


@pytest.mark.parametrize("causal", [False, True])
def test_references_equal_ffconvm_and_fsmn_convs(causal):
    ff = _randomize(FFConvM(6, 10, torch.nn.LayerNorm(6), 17, 0.0, causal))
    h = torch.randn(2, 23, 10)
    c = F.pad(h.transpose(1, 2), (16, 0)) if causal else h.transpose(1, 2)
    want = h + ff.dwconv(c).transpose(1, 2)
    pad = (16, 0) if causal else (8, 8)
    got = kernels.reference_depthwise_conv1d(h, ff.dwconv.weight, None, 1, pad, channels_last=True, residual=True)
    assert torch.allclose(got, want, rtol=0, atol=1e-6)

    fsmn = _randomize(DilatedDenseFSMN(5, lorder=4, depth=2, causal=causal))
    skip = torch.randn(2, 10, 30)  # layer 1: two input channels per output channel
    conv = fsmn.convs[1]
    pads = (12, 0) if causal else (6, 6)
    want = conv(F.pad(skip, pads))
    assert torch.equal(kernels.reference_depthwise_conv1d(skip, conv.weight, None, 2, pads), want)


# ------------------------------------------------------------------------------------------
# dispatch
# ------------------------------------------------------------------------------------------
def test_dispatch_takes_the_reference_on_cpu_and_when_told(monkeypatch):
    x = torch.randn(2, 4, 9)
    monkeypatch.delenv(accel.ENV, raising=False)
    assert accel.mode() == "auto" and not kernels.use_triton(x)
    monkeypatch.setenv(accel.ENV, "reference")
    assert not kernels.use_triton(x)
    with accel.force("triton"):  # force() wins over the environment
        if TRITON is not None and TRITON.INTERPRETED:
            assert kernels.use_triton(x)
        else:  # no interpreter: forcing Triton on a CPU tensor is an error, not a silent fallback
            with pytest.raises(RuntimeError, match="triton"):
                kernels.use_triton(x)
        assert not kernels.use_triton(x.double())  # float64: always the reference
    if torch.cuda.is_available():
        assert not kernels.use_triton(x.cuda())
    monkeypatch.setenv(accel.ENV, "fast")
    with pytest.raises(ValueError, match="AUDIOMASK_KERNELS"):
        kernels.use_triton(x.cuda() if torch.cuda.is_available() else x)
    monkeypatch.delenv(accel.ENV)
    # on the reference path the ops are exactly their references
    w, b, s, g, beta = torch.randn(4, 1, 3), torch.randn(4), torch.rand(1), torch.randn(4), torch.randn(4)
    args = (x, w, b, 2, (2, 2), s, g, beta, "gLN", 1e-8)
    assert torch.equal(kernels.dwconv_prelu_norm(*args), kernels.reference_dwconv_prelu_norm(*args))


def _fake_timer(times: list):
    """A :class:`kernels.Policy` timer that returns ``times`` in order (the fused path is
    timed first, then the reference) and records each call."""
    calls = []

    def timer(fn):
        calls.append(fn)
        return times[len(calls) - 1]
    return timer, calls


def test_policy_picks_the_faster_path_once_per_shape_class():
    timer, calls = _fake_timer([2.0, 1.0, 1.0, 2.0, 0.995, 1.0])
    policy = kernels.Policy(timer=timer)

    def key(frames, **conf):
        return kernels.shape_class("prelu_norm", torch.randn(2, 4, frames), norm="gLN", slopes=1, **conf)

    # fused slower: the reference, measured once for the class (101 and 128 frames share it)
    assert policy.choose(key(101), lambda: None, lambda: None) == "reference"
    assert policy.choose(key(128), lambda: None, lambda: None) == "reference"
    assert len(calls) == 2 and policy.choices[key(101)][1].startswith("measured")
    # another class (more frames): fused faster, so fused
    assert policy.choose(key(3000), lambda: None, lambda: None) == "triton"
    assert len(calls) == 4
    # a win inside the 2 % margin is a tie, settled on the reference
    assert policy.choose(key(3000, extra=1), lambda: None, lambda: None) == "reference"
    policy.clear()
    assert not policy.choices


def test_policy_rules_route_without_timing():
    timer, calls = _fake_timer([1.0, 9.0])
    policy = kernels.Policy(timer=timer)
    x = torch.randn(1, 8, 50)  # FSMN dense memory layer: two input channels per output channel
    grouped = kernels.shape_class("depthwise_conv1d", x, groups=2, taps=7, dilation=2, padding=(6, 6),
                                  channels_last=False, residual=False, bias=False)
    assert policy.choose(grouped, lambda: None, lambda: None) == "reference"
    assert not calls and policy.choices[grouped][1].startswith("rule")
    plain = kernels.shape_class("depthwise_conv1d", x, groups=1, taps=7, dilation=2, padding=(6, 6),
                                channels_last=False, residual=False, bias=False)
    assert policy.choose(plain, lambda: None, lambda: None) == "triton" and len(calls) == 2


def test_policy_keeps_the_reference_when_timing_fails():
    def timer(fn):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")
    policy = kernels.Policy(timer=timer)
    key = kernels.shape_class("prelu_norm", torch.randn(1, 4, 9), norm="cLN", slopes=1)
    assert policy.choose(key, lambda: None, lambda: None) == "reference"
    assert "OutOfMemoryError" in policy.choices[key][1]


@needs_triton
@pytest.mark.parametrize("fused_ms,expect_fused", [(2.0, False), (0.5, True)])
def test_ops_follow_the_policy_in_auto_mode(monkeypatch, counted, fused_ms, expect_fused):
    """In ``auto`` mode an op runs Triton only where the policy measured it faster (CUDA
    stands in here by letting :func:`kernels.use_triton` say yes on the interpreter)."""
    if ON_GPU:
        pytest.skip("CPU-only check (fake timings)")
    timer, calls = _fake_timer([fused_ms, 1.0])
    monkeypatch.setattr(kernels, "POLICY", kernels.Policy(timer=timer))
    monkeypatch.setattr(kernels, "use_triton", lambda x: True)
    monkeypatch.delenv(accel.ENV, raising=False)
    x = torch.randn(2, 8, 33, requires_grad=True)
    args = (torch.rand(1), torch.randn(8), torch.randn(8), "gLN", 1e-8)
    with accel.force("auto"):
        y = kernels.prelu_norm(x, *args)
        y.sum().backward()
        kernels.prelu_norm(x, *args)  # same class: no second measurement
    assert len(calls) == 2 and counted["conv_prelu_norm"] == (2 if expect_fused else 0)
    _close(y, kernels.reference_prelu_norm(x, *args), what="output")
    assert x.grad is not None  # the trial runs did not detach the caller's graph
    # the grouped depthwise conv takes the reference by rule: no timing, no kernel
    kernels.depthwise_conv1d(torch.randn(1, 8, 40), torch.randn(4, 2, 5), None, 2, (4, 4))
    assert len(calls) == 2 and counted["depthwise_conv1d"] == 0


@needs_triton
def test_env_switch_forces_triton_under_the_interpreter(monkeypatch, counted):
    if ON_GPU:
        pytest.skip("CPU-only check")
    assert TRITON.INTERPRETED, "the Triton kernels were not loaded under TRITON_INTERPRET=1"
    monkeypatch.setenv(accel.ENV, "triton")
    x = torch.randn(1, 4, 9)
    assert kernels.use_triton(x)
    kernels.prelu_norm(x, torch.rand(1), torch.randn(4), torch.randn(4), "cLN", 1e-8)
    assert counted["conv_prelu_norm"] == 1


def test_unknown_norm_is_refused():
    with pytest.raises(ValueError, match="unknown norm"):
        kernels.prelu_norm(torch.randn(1, 2, 3), torch.rand(1), torch.ones(2), torch.zeros(2), "BN", 1e-5)


# ------------------------------------------------------------------------------------------
# the kernels are torch.library custom ops
# ------------------------------------------------------------------------------------------
def _op_samples():
    g = torch.Generator().manual_seed(5)

    def r(*shape):
        return torch.randn(*shape, generator=g, device="cpu").to(DEVICE).requires_grad_(True)

    ops = torch.ops.audiomask
    return [
        ("conv_prelu_norm-gLN", ops.conv_prelu_norm.default,
         (r(2, 6, 19), r(6, 1, 3), r(6), r(1), r(6), r(6), 2, 4, 0, "gLN", 1e-8)),
        ("conv_prelu_norm-cLN-nobias", ops.conv_prelu_norm.default,
         (r(1, 5, 23), r(5, 1, 3), None, r(5), r(5), r(5), 1, 2, 0, "cLN", 1e-8)),
        ("prelu_norm-chanLN", ops.conv_prelu_norm.default,
         (r(2, 4, 17), None, None, r(1), r(4), r(4), 1, 0, 0, "chanLN", 1e-5)),
        ("depthwise_conv1d", ops.depthwise_conv1d.default, (r(2, 6, 21), r(3, 2, 3), r(3), 2, 2, 2, False, False)),
        ("depthwise_conv1d-last-res", ops.depthwise_conv1d.default,
         (r(2, 21, 4), r(4, 1, 5), None, 1, 4, 0, True, True)),
    ]


@needs_triton
@pytest.mark.parametrize("index", range(5))
def test_kernels_are_registered_custom_ops(index):
    """``torch.library.opcheck``: schema, fake (shape) implementation, autograd registration and
    AOT dispatch of every op, forward and backward ops included."""
    TRITON.conv_prelu_norm  # noqa: B018  (the ops are registered when _triton is imported)
    name, op, args = _op_samples()[index]
    torch.library.opcheck(op, args, test_utils=("test_schema", "test_autograd_registration",
                                                "test_faketensor", "test_aot_dispatch_dynamic"))


@needs_triton
def test_torch_compile_sees_the_ops(counted):
    """A TCN block under ``torch.compile`` (AOT autograd, eager backend) in ``triton`` mode
    keeps the custom ops in its graph and equals the eager reference, gradients included."""
    torch.manual_seed(3)
    block = _randomize(DepthwiseTCNBlock(8, 16, 8, kernel_size=3, dilation=2, norm="gLN", causal=False)).to(DEVICE)
    x = torch.randn(2, 8, 29, device=DEVICE)

    def loss(outputs):
        return sum(o.square().sum() for o in outputs)

    want = block(x)
    loss(want).backward()
    want_grads = [p.grad.clone() for p in block.parameters()]
    block.zero_grad()
    compiled = torch.compile(lambda t: kernels.tcn_block_forward(block, t), backend="aot_eager", fullgraph=True)
    with triton_path():
        got = compiled(x)
        loss(got).backward()
    assert counted["conv_prelu_norm"] >= 2  # traced into the graph (and run)
    for g, w in zip(got, want):
        _close(g, w, 1e-4, "output")
    for p, w in zip(block.parameters(), want_grads):
        _close(p.grad, w, 1e-3, "gradient")


# ------------------------------------------------------------------------------------------
# kernels vs references
# ------------------------------------------------------------------------------------------
DWCONV_CASES = [  # batch, channels, frames, kernel, dilation, causal, per-channel slope, conv bias
    (1, 4, 37, 3, 1, True, False, True),
    (2, 24, 101, 3, 4, False, False, True),
    (3, 64, 37, 3, 8, True, False, True),
    (2, 7, 50, 5, 2, False, True, True),
    (1, 33, 64, 3, 2, True, False, False),
]


@needs_triton
@pytest.mark.parametrize("norm", kernels.NORMS)
@pytest.mark.parametrize("case", DWCONV_CASES, ids=lambda c: "B{}C{}T{}P{}d{}{}{}{}".format(
    *c[:5], "causal" if c[5] else "", "-perchan" if c[6] else "", "" if c[7] else "-nobias"))
def test_dwconv_prelu_norm(norm, case, counted):
    B, C, T, P, d, causal, per_channel, bias = case
    torch.manual_seed(zlib.crc32(repr((norm, case)).encode()) % 1000)  # not hash(): salted per process
    context = (P - 1) * d
    inputs = dict(x=torch.randn(B, C, T) * 2 + 0.3, dw_weight=torch.randn(C, 1, P),
                  dw_bias=torch.randn(C) if bias else None, dilation=d,
                  padding=(context, 0) if causal else (context // 2, context // 2),
                  prelu_weight=torch.rand(C if per_channel else 1), norm_weight=torch.randn(C),
                  norm_bias=torch.randn(C), norm=norm, eps=1e-8)
    _compare(kernels.dwconv_prelu_norm, inputs)
    assert counted["conv_prelu_norm"] == 1


@needs_triton
@pytest.mark.parametrize("norm", kernels.NORMS)
@pytest.mark.parametrize("B,C,T,per_channel", [(2, 16, 37, False), (1, 40, 101, True)])
def test_prelu_norm(norm, B, C, T, per_channel, counted):
    torch.manual_seed(C + T)
    inputs = dict(x=torch.randn(B, C, T) * 3 - 0.5, prelu_weight=torch.rand(C if per_channel else 1),
                  norm_weight=torch.randn(C), norm_bias=torch.randn(C), norm=norm, eps=1e-8)
    _compare(kernels.prelu_norm, inputs)
    assert counted["conv_prelu_norm"] == 1


@needs_triton
@pytest.mark.parametrize("norm", kernels.NORMS)
def test_channel_splits_and_frame_chunks(norm, monkeypatch):
    """Several channel splits (the last one partial) and several chunks of the per-example
    pass (the cumulative sums carried across chunks, forward and reverse)."""
    monkeypatch.setattr(TRITON, "CHANNELS_PER_SPLIT", 16)
    monkeypatch.setattr(TRITON, "FIN_BLOCK_T", 16)
    torch.manual_seed(3)
    C = 40
    inputs = dict(x=torch.randn(2, C, 70) + 1.0, dw_weight=torch.randn(C, 1, 3), dw_bias=torch.randn(C),
                  dilation=2, padding=(4, 0), prelu_weight=torch.rand(1), norm_weight=torch.randn(C),
                  norm_bias=torch.randn(C), norm=norm, eps=1e-8)
    _compare(kernels.dwconv_prelu_norm, inputs)


CONV_CASES = [  # channels, groups, frames, kernel, dilation, padding, channels_last, residual, bias
    (10, 1, 23, 17, 1, (8, 8), True, True, False),      # FFConvM, non-causal
    (10, 1, 23, 17, 1, (16, 0), True, True, False),     # FFConvM, causal
    (6, 1, 37, 7, 1, (3, 3), False, False, False),      # FSMN layer 0
    (6, 2, 37, 7, 2, (12, 0), False, False, False),     # FSMN layer 1, causal
    (5, 3, 101, 5, 4, (8, 8), False, False, True),
    (3, 1, 300, 3, 1, (1, 1), False, False, True),      # several frame tiles / weight splits
]


@needs_triton
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "C{}G{}T{}P{}d{}".format(*c[:5]) + (
    "-last" if c[6] else "") + ("-res" if c[7] else "") + ("-bias" if c[8] else ""))
def test_depthwise_conv1d(case, counted):
    C, G, T, P, d, padding, channels_last, residual, bias = case
    torch.manual_seed(C * T + d)
    x = torch.randn(2, T, C * G) if channels_last else torch.randn(2, C * G, T)
    inputs = dict(x=x, weight=torch.randn(C, G, P), bias=torch.randn(C) if bias else None,
                  dilation=d, padding=padding, channels_last=channels_last, residual=residual)
    _compare(kernels.depthwise_conv1d, inputs)
    assert counted["depthwise_conv1d"] == 1


@needs_triton
def test_depthwise_conv1d_reads_strided_views():
    """FSMN hands a transposed ``[B, T, C]`` projection as ``[B, C, T]``: read in place."""
    torch.manual_seed(5)
    base = torch.randn(2, 29, 6, device=DEVICE)
    x, w = base.transpose(1, 2), torch.randn(6, 1, 7, device=DEVICE)
    assert not x.is_contiguous()
    with triton_path():
        got = kernels.depthwise_conv1d(x, w, None, 2, (6, 6))
    _close(got, kernels.reference_depthwise_conv1d(x, w, None, 2, (6, 6)), what="strided")


def _scale_case(op: str, norm: str) -> tuple:
    """Inputs at a size where a biased float32 rounding in a backward pass shows: 2 x 64 x 2048
    (262,144 terms in each scalar slope's gradient), activations with a non-zero mean (as in
    a TCN). With the kernels before the fix, the slope's error was 3.7x (``prelu_norm``) and
    8x (``dwconv_prelu_norm``) eager's here; after it 0.2x and 0.3x (gLN)."""
    B, C, T = 2, 64, 2048
    g = torch.Generator().manual_seed(zlib.crc32(f"{op}-{norm}".encode()))
    slope = torch.rand(1, generator=g) * 0.3
    if op == "prelu_norm":
        return kernels.prelu_norm, dict(x=torch.randn(B, C, T, generator=g) + 0.5, prelu_weight=slope,
                                        norm_weight=torch.rand(C, generator=g) + 0.5,
                                        norm_bias=torch.randn(C, generator=g), norm=norm, eps=1e-8)
    if op == "dwconv_prelu_norm":
        return kernels.dwconv_prelu_norm, dict(
            x=torch.randn(B, C, T, generator=g) + 0.5, dw_weight=torch.randn(C, 1, 3, generator=g) * 0.5,
            dw_bias=torch.randn(C, generator=g) * 0.1, dilation=4, padding=(4, 4), prelu_weight=slope,
            norm_weight=torch.rand(C, generator=g) + 0.5, norm_bias=torch.randn(C, generator=g), norm=norm, eps=1e-8)
    groups = 1 if norm == "channels_last" else 2
    x = torch.randn(B, T, C, generator=g) if groups == 1 else torch.randn(B, C * groups, T, generator=g)
    return kernels.depthwise_conv1d, dict(x=x + 0.5, weight=torch.randn(C, groups, 5, generator=g) * 0.3,
                                          bias=torch.randn(C, generator=g), dilation=2, padding=(4, 4),
                                          channels_last=groups == 1, residual=groups == 1)


def _at_scale(op: str, norm: str):
    """gLN cases run by default (about 5-10 s each under the interpreter), the rest ``slow``."""
    return pytest.param(op, norm, marks=() if norm == "gLN" else pytest.mark.slow)


@needs_triton
@pytest.mark.parametrize("op,norm", [_at_scale(op, n) for op in ("prelu_norm", "dwconv_prelu_norm")
                                     for n in kernels.NORMS]
                         + [_at_scale("depthwise_conv1d", "channels_last"), _at_scale("depthwise_conv1d", "grouped")])
def test_fused_gradients_as_accurate_as_eager_at_scale(op, norm):
    """Every fused backward (input and parameter gradients) against a float64 reference: its
    float32 error at most 2x eager float32's, per tensor. Issue 23: the slope gradients were
    several times eager's error (3.7x and 8x here), from rounding ``rstd*g + P`` twice with
    ``P`` the same for a whole example. On CUDA the same test runs the compiled kernels."""
    fn, inputs = _scale_case(op, norm)
    _compare(fn, inputs, factor=2.0)


# ------------------------------------------------------------------------------------------
# models: the Triton path equals the reference path
# ------------------------------------------------------------------------------------------
@pytest.fixture
def module_path(monkeypatch):
    """Switch off the masker-level CPU paths (C kernels, :mod:`audiomask.native`), which take
    CPU tensors before the blocks' dispatch could; CUDA tensors never take them."""
    from audiomask import native

    monkeypatch.setattr(native, "BUILT", False)


def _model_paths_agree(model: torch.nn.Module, mix: torch.Tensor) -> None:
    model = model.to(DEVICE).eval()  # eval: no dropout, so both paths see the same network
    results = []
    for path in (accel.force("reference"), triton_path()):
        with path:
            out = model(mix.to(DEVICE))
            (out * torch.linspace(-1, 1, out.shape[-1], device=DEVICE)).sum().backward()
        results.append((out.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
        model.zero_grad(set_to_none=True)
    (ref, g_ref), (tri, g_tri) = results
    _close(tri, ref, rel=2e-4, what="model output")
    assert g_tri.keys() == g_ref.keys()  # e.g. the last block's unused residual conv: none in both
    for name, g in g_ref.items():
        _close(g_tri[name], g, rel=5e-4, what=name)


@needs_triton
@pytest.mark.parametrize("preset,norm", [("tiny", "gLN"), ("tiny", "cLN"), ("tiny", "chanLN")])
def test_convtasnet_triton_path_equals_reference(preset, norm, counted, module_path):
    torch.manual_seed(0)
    model = audiomask.build("convtasnet", preset, norm=norm, causal=norm != "gLN")
    _model_paths_agree(model, torch.randn(2, 803) * 0.1)
    assert counted["conv_prelu_norm"] == 2 * len(model.masker.blocks)


@needs_triton
@pytest.mark.parametrize("causal", [False, True])
def test_mossformer2_triton_path_equals_reference(causal, counted, module_path):
    torch.manual_seed(1)
    model = audiomask.build("mossformer2", "small-causal" if causal else "small", n_filters=16, d_model=16,
                            n_layers=1, qk_dim=8, rotary_dim=8, group_size=16, fsmn_channels=8, fsmn_lorder=4)
    _model_paths_agree(model, torch.randn(1, 400) * 0.1)
    # 3 FFConvM in the attention unit, 2 in the gated FSMN, 2 dense memory layers
    assert counted["depthwise_conv1d"] == 7


# ------------------------------------------------------------------------------------------
# the kernels compile for the GPU (CI has none: the interpreter does not compile them)
# ------------------------------------------------------------------------------------------
@needs_triton
@pytest.mark.slow
def test_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-m", "audiomask.kernels.compile_check", "--quick", "--arch", "90"],
                         capture_output=True, text=True, env=env, timeout=900)
    if run.returncode and "ptxas" in run.stderr and "not found" in run.stderr.lower():
        pytest.skip("ptxas not available")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "compiled for sm_90" in run.stdout
