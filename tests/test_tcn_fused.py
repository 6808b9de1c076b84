"""The CPU paths of the gLN TCN equal the modules: inference (audiomask.maskers.tcn.cpu_inference) the
module forward — masker level and whole model, any length, batch, sources, skip path or not —
and training (audiomask.maskers.tcn.cpu_training) autograd's outputs and gradients."""

import pytest
import torch

from audiomask import accel, native
from audiomask.maskers.tcn import cpu_inference, cpu_training, dispatch
from audiomask.maskers.tcn import TCNMasker
from audiomask.maskers.tcn.dispatch import runs_cpu_inference
from audiomask.models import ConvTasNet

pytestmark = pytest.mark.skipif(not native.BUILT, reason="C kernels not built")


@pytest.fixture(autouse=True)
def avx512(monkeypatch):
    """Every test here runs as on a CPU where ``accel.fuse_on_cpu()`` takes the C paths in
    ``auto`` mode (they are compared with the modules on any CPU)."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")


def _model(**overrides) -> ConvTasNet:
    """A small gLN Conv-TasNet whose norms and PReLUs are far from their initial values, so
    the folding of γ, β and the statistics is exercised."""
    torch.manual_seed(0)
    config = dict(n_filters=64, bn_chan=32, hid_chan=48, skip_chan=32, n_blocks=4, n_repeats=2)
    config.update(overrides)
    model = ConvTasNet(ConvTasNet.make_config(None, **config)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "act" in name:
                p.add_(0.5 * torch.randn_like(p))
    return model


def _reference(model, x):
    with torch.enable_grad():  # the fast path is inference-only: grad mode runs the modules
        return model(x).detach()


def _fast(model, x):
    with torch.inference_mode():
        assert runs_cpu_inference(model.masker, x)
        return model(x)


@pytest.mark.parametrize("length", [1, 7, 16, 17, 123, 4001])
def test_fast_model_equals_module_forward(length):
    model = _model()
    x = torch.randn(2, length)
    ref = _reference(model, x)
    assert (_fast(model, x) - ref).abs().max() <= 1e-5 * max(1.0, ref.abs().max().item())


def test_fast_model_on_posix_threads_equals_module_forward():
    """The C passes on threads of their own (where PyTorch's OpenMP team is not found) give
    the same result as on that team."""
    from audiomask import native

    model = _model()
    x = torch.randn(1, 4001)
    ref = _reference(model, x)
    native.posix_threads(True)
    try:
        out = _fast(model, x)
    finally:
        native.posix_threads(False)
    assert (out - ref).abs().max() <= 1e-5 * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("overrides", [{"skip_chan": 0}, {"n_src": 3, "mask_act": "softmax"},
                                       {"mask_act": "relu", "framing": "valid"},
                                       {"conv_kernel_size": 5, "encoder_activation": "relu"}])
def test_fast_path_variants(overrides):
    model = _model(**overrides)
    x = torch.randn(1, 3001)
    ref = _reference(model, x)
    assert (_fast(model, x) - ref).abs().max() <= 1e-5 * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("chunk", [37, 5])
def test_chunked_long_input_path_equals_module_forward(monkeypatch, chunk):
    """Above WHOLE frames every pass runs chunk by chunk (a chunk shorter than the largest
    dilation included) into the shared mapped buffers, and masks are decoded in chunks: the
    result is still the module forward's."""
    monkeypatch.setattr(cpu_inference, "WHOLE", 100)
    monkeypatch.setattr(cpu_inference, "SPAN", chunk)
    monkeypatch.setattr(cpu_inference, "MASK_SPAN", 29)
    monkeypatch.setattr("audiomask.runtime.MAPPED_MIN_BYTES", 1024)  # small buffers mapped too
    for overrides in ({}, {"skip_chan": 0}, {"n_src": 3, "mask_act": "softmax"}):
        model = _model(**overrides)
        x = torch.randn(2, 4007)
        assert len(cpu_inference._spans(model.encoder.framing.n_frames(4007))) > 1
        ref = _reference(model, x)
        assert (_fast(model, x) - ref).abs().max() <= 1e-5 * max(1.0, ref.abs().max().item())
        rep = model.encoder(x)
        with torch.enable_grad():
            ref = model.masker(rep).detach()
        with torch.no_grad():
            assert (model.masker(rep) - ref).abs().max() <= 1e-5


def test_mapped_zeros_are_zero_tensors_outside_the_heap():
    from audiomask.runtime import mapped_zeros

    big = mapped_zeros(1000, 600)
    assert big.shape == (1000, 600) and big.dtype == torch.float32 and big.is_contiguous()
    assert big.abs().sum().item() == 0.0
    big[999, 599] = 3.0  # writable, as large as asked
    assert big.sum().item() == 3.0
    small = mapped_zeros(3, 4, dtype=torch.float64)
    assert small.dtype == torch.float64 and small.abs().sum().item() == 0.0


def test_fast_masker_equals_module_masker():
    model = _model()
    rep = model.encoder(torch.randn(3, 2000))
    with torch.enable_grad():
        ref = model.masker(rep).detach()
    with torch.no_grad():
        fast = model.masker(rep)
    assert fast.shape == ref.shape
    assert (fast - ref).abs().max() <= 1e-5


def test_folded_weights_follow_parameter_updates():
    model = _model()
    x = torch.randn(1, 800)
    before = _fast(model, x)
    with torch.no_grad():
        model.masker.blocks[1].dw_norm.weight.mul_(2.0)
    after = _fast(model, x)
    assert (after - before).abs().max() > 1e-3
    assert (after - _reference(model, x)).abs().max() <= 1e-5 * max(1.0, after.abs().max().item())


def test_fast_path_applies_only_where_it_is_exact():
    model = _model()
    x = torch.randn(1, 100)
    with torch.enable_grad():
        assert not runs_cpu_inference(model.masker, x)  # training needs autograd
    with torch.no_grad():
        assert runs_cpu_inference(model.masker, x)
        assert not runs_cpu_inference(model.masker, x.double())
        assert not runs_cpu_inference(_model(norm="cLN", causal=True).masker, x)
        assert not runs_cpu_inference(_model(norm="chanLN").masker, x)


def test_row_kernels_match_torch():
    torch.manual_seed(1)
    h = torch.randn(37, 24)
    s, q = native.prelu_stats(h[:, :20], 0.3)  # strided rows
    u = torch.nn.functional.prelu(h[:, :20], torch.tensor([0.3])).double()
    assert abs(s - u.sum().item()) < 1e-4 and abs(q - u.square().sum().item()) < 1e-4
    scale, shift, taps, bias = torch.randn(24), torch.randn(24), torch.randn(3, 24), torch.randn(24)
    out = torch.empty(37, 24)
    s, q = native.norm_dwconv_prelu(h, 0.3, scale, shift, taps, bias, 4, 4, 0.1, out)
    n = torch.nn.functional.prelu(h, torch.tensor([0.3])) * scale + shift  # [T, H]
    conv = torch.nn.functional.conv1d(n.t()[None], taps.t()[:, None], bias, padding=4, dilation=4, groups=24)
    ref = torch.nn.functional.prelu(conv[0].t(), torch.tensor([0.1]))
    assert (out - ref).abs().max() < 1e-5
    assert abs(s - ref.double().sum().item()) < 1e-3 and abs(q - ref.double().square().sum().item()) < 1e-3


@pytest.mark.parametrize("overrides", [{}, {"skip_chan": 0}, {"conv_kernel_size": 5, "n_blocks": 3}])
def test_fused_training_blocks_match_autograd(overrides):
    model = _model(**overrides)
    rep = model.encoder(torch.randn(3, 1203)).detach().requires_grad_()
    results = []
    for features in (TCNMasker.module_features, cpu_training.tcn_features):
        model.zero_grad()
        rep.grad = None
        out = features(model.masker, rep)
        weights = torch.linspace(-1.0, 1.0, out.numel()).view_as(out)
        (out * weights).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.masker.named_parameters() if p.grad is not None}
        results.append((out.detach(), rep.grad.clone(), grads))
    (ref, ref_dx, ref_grads), (out, dx, grads) = results
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()
    assert (dx - ref_dx).abs().max() <= 1e-4 * ref_dx.abs().max()
    # every parameter the module path trains gets the same gradient; the last block's residual
    # conv, unused when skips exist, gets none there and a zero one here
    assert set(ref_grads) <= set(grads)
    assert all(grads[name].abs().max() == 0 for name in set(grads) - set(ref_grads))
    for name, ref_grad in ref_grads.items():
        assert (grads[name] - ref_grad).abs().max() <= 1e-4 * max(ref_grad.abs().max().item(), 1e-6), name


@pytest.mark.parametrize("capability,env,fused", [("AVX512", "auto", True), ("AVX2", "auto", False),
                                                  ("AVX2", "triton", True), ("AVX512", "reference", False)])
def test_the_cpu_paths_are_chosen_by_rule(monkeypatch, capability, env, fused):
    """The C paths run by a rule on the CPU's capability and the mode, never a timing, so two
    runs of one seed take the same path; both paths give the same loss."""
    model = _model().train()
    mix = torch.randn(2, 1600)
    rep = model.encoder(mix)
    assert dispatch.cpu_fusable(model.masker, rep)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setenv(accel.ENV, env)
    calls = []
    real = cpu_training.tcn_features
    monkeypatch.setattr(cpu_training, "tcn_features", lambda *a: calls.append(1) or real(*a))
    assert accel.fuse_on_cpu() is fused
    assert dispatch.select_path(model.masker, rep) == ("cpu_training" if fused else "modules")
    with torch.no_grad():
        assert runs_cpu_inference(model.masker, rep) is fused
    loss = model(mix).square().mean()
    assert bool(calls) is fused
    with accel.force("reference"):  # the modules
        ref = model(mix).square().mean()
    assert abs(loss.item() - ref.item()) <= 1e-5 * abs(ref.item())


def test_model_built_under_inference_mode_runs_the_fast_path():
    with torch.inference_mode():
        torch.manual_seed(0)
        built = ConvTasNet(ConvTasNet.make_config(None, n_filters=32, bn_chan=16, hid_chan=24, skip_chan=16,
                                                  n_blocks=2, n_repeats=1)).eval()
        x = torch.randn(1, 500)
        out = built(x)
    with accel.force("reference"), torch.inference_mode():
        ref = built(x)
    assert (out - ref).abs().max() <= 1e-5 * max(1.0, ref.abs().max().item())


def test_mac_count_sees_the_work_of_the_kernels():
    from audiomask.macs import count_macs

    model = _model()
    with_kernels = count_macs(model, seconds=0.25)
    with accel.force("reference"):
        assert count_macs(model, seconds=0.25) == with_kernels


def test_onednn_dense_layers_equal_linear():
    """The oneDNN inner products of the fast path (when this build has them) equal ``F.linear``
    and ``addmm``; ``enabled()``, what the benches ask, follows the acceleration mode."""
    from audiomask.nn import onednn

    gen = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(4001, 128, generator=gen), torch.randn(512, 128, generator=gen), torch.randn(512, generator=gen)
    other = torch.randn(4001, 512, generator=gen)
    ref, ref_add = torch.nn.functional.linear(x, w, b), torch.addmm(other, x, w.t())
    for m in ("auto", "reference"):
        with accel.force(m):
            assert onednn.enabled() == (m == "auto" and onednn.available())
    with torch.inference_mode():
        assert (onednn.linear(x, w, b) - ref).abs().max() <= 1e-4 * ref.abs().max()
        assert (onednn.linear_add(x, other, w) - ref_add).abs().max() <= 1e-4 * ref_add.abs().max()
        assert (onednn.linear(x[:, :64], w[:, :64]) - x[:, :64] @ w[:, :64].t()).abs().max() <= 1e-3
