"""MossFormer weights from ModelScope and MossFormer2 weights from ClearerVoice-Studio.

* ``modelscope-mossformer``: the authors' ModelScope ``MossFormer``
  (``damo/speech_mossformer_separation_temporal_8k``). Its model folder holds three files,
  ``encoder.bin``, ``decoder.bin`` and ``masknet.bin``; pass either the combined state_dict
  (keys ``encoder.*``, ``decoder.*``, ``mask_net.*``) or ``{"encoder": …, "decoder": …,
  "masknet": …}`` with the three loaded files.
* ``clearervoice-mossformer2``: ClearerVoice-Studio's ``MossFormer2_SS_16K`` (``enc.*``,
  ``mask_net.*``, ``dec.*``; a ``{"model": sd}`` package and ``module.`` / ``model.`` prefixes
  are unwrapped).

Every key and shape of the reference state_dicts (``shared/reference/*.keys.txt``) has a
place: the names are mapped rule by rule (:data:`MODELSCOPE_RULES`, :data:`CLEARERVOICE_RULES`),
the authors' ``Conv2d`` FSMN kernels ``[C, k, K, 1]`` and 1×1 ``Conv1d`` bottlenecks
``[O, I, 1]`` are reshaped to audiomask's ``Conv1d``/``Linear`` weights. The rotary
frequencies are one frozen tensor in the authors' model, listed once per layer (aliases):
they become audiomask's single ``masker.rotary.freqs`` buffer, and copies that differ are an
error. The sinusoidal ``pos_enc.inv_freq`` buffer is loaded as it is.

The checkpoint is checked in its own vocabulary before anything is loaded: a missing,
unexpected or mis-shaped tensor raises :class:`~audiomask.models.checkpoint.CheckpointError`
naming the authors' key. :func:`to_modelscope_mossformer` / :func:`to_clearervoice_mossformer2`
write a model back out under the authors' names (the round trip is exact).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from audiomask.interop.convtasnet import unwrap_state_dict
from audiomask.models.checkpoint import CheckpointError, build_checked, check_state_dict
from audiomask.state_dicts import state_dict_problems
from audiomask.models.mossformer import MossFormer, MossFormer2

# (authors' key, audiomask key, reshape). Placeholders: {i} layer, {k} the authors' 1-based
# FSMN dense layer (conv1, conv2 …) ↔ {j} = k - 1 in audiomask. Reshape "1x1": the authors'
# weight has a trailing kernel axis of 1 that audiomask's Linear/Conv1d does not.
_FFCONVM = [
    ("{p}.mdl.0.g", "{q}.norm.g", None),
    ("{p}.mdl.0.weight", "{q}.norm.weight", None),
    ("{p}.mdl.0.bias", "{q}.norm.bias", None),
    ("{p}.mdl.1.weight", "{q}.linear.weight", None),
    ("{p}.mdl.1.bias", "{q}.linear.bias", None),
    ("{p}.mdl.3.sequential.1.conv.weight", "{q}.dwconv.weight", None),
]


def _ffconvm(theirs: str, ours: str) -> list[tuple[str, str, str | None]]:
    return [(a.format(p=theirs), b.format(q=ours), r) for a, b, r in _FFCONVM]


def _attention_rules(stack: str) -> list[tuple[str, str, str | None]]:
    layer = f"{stack}.mossformerM.layers.{{i}}"
    rules = [(f"{layer}.rotary_pos_emb.freqs", "masker.rotary.freqs", None),
             (f"{layer}.qk_offset_scale.gamma", "masker.layers.{i}.offset_scale.gamma", None),
             (f"{layer}.qk_offset_scale.beta", "masker.layers.{i}.offset_scale.beta", None)]
    for proj in ("to_hidden", "to_qk", "to_out"):
        rules += _ffconvm(f"{layer}.{proj}", f"masker.layers.{{i}}.{proj}")
    return rules


_HEAD = [
    ("mask_net.norm.weight", "masker.input_norm.weight", None),
    ("mask_net.norm.bias", "masker.input_norm.bias", None),
    ("mask_net.conv1d_encoder.weight", "masker.in_conv.weight", None),
    ("mask_net.pos_enc.scale", "masker.pos_enc.scale", None),
    ("mask_net.pos_enc.inv_freq", "masker.pos_enc.inv_freq", None),
    ("mask_net.prelu.weight", "masker.out_act.weight", None),
    ("mask_net.conv1d_out.weight", "masker.out_conv.weight", None),
    ("mask_net.conv1d_out.bias", "masker.out_conv.bias", None),
    ("mask_net.output.0.weight", "masker.gate_tanh.weight", None),
    ("mask_net.output.0.bias", "masker.gate_tanh.bias", None),
    ("mask_net.output_gate.0.weight", "masker.gate_sigmoid.weight", None),
    ("mask_net.output_gate.0.bias", "masker.gate_sigmoid.bias", None),
    ("mask_net.conv1_decoder.weight", "masker.mask_conv.weight", None),
]

#: ModelScope ``MossFormer`` → audiomask :class:`~audiomask.models.mossformer.MossFormer`.
MODELSCOPE_RULES: list[tuple[str, str, str | None]] = [
    ("encoder.conv1d.weight", "encoder.conv.weight", None),
    ("decoder.weight", "decoder.conv.weight", None),
    *_HEAD,
    *_attention_rules("mask_net.mdl.att_mdl"),
    ("mask_net.mdl.att_mdl.norm.norm.weight", "masker.layer_norm.weight", None),
    ("mask_net.mdl.att_mdl.norm.norm.bias", "masker.layer_norm.bias", None),
    ("mask_net.mdl.att_norm.weight", "masker.out_norm.weight", None),
    ("mask_net.mdl.att_norm.bias", "masker.out_norm.bias", None),
]

_FSMN = "mask_net.mdl.intra_mdl.mossformerM.fsmn.{i}"
_GATED = _FSMN + ".gated_fsmn"

#: ClearerVoice ``MossFormer2_SS_16K`` (inner ``MossFormer``) → audiomask
#: :class:`~audiomask.models.mossformer.MossFormer2`.
CLEARERVOICE_RULES: list[tuple[str, str, str | None]] = [
    ("enc.conv1d.weight", "encoder.conv.weight", None),
    ("dec.weight", "decoder.conv.weight", None),
    *_HEAD,
    *_attention_rules("mask_net.mdl.intra_mdl"),
    (f"{_FSMN}.conv1.0.weight", "masker.fsmn.{i}.in_conv.weight", "1x1"),
    (f"{_FSMN}.conv1.0.bias", "masker.fsmn.{i}.in_conv.bias", None),
    (f"{_FSMN}.conv1.1.weight", "masker.fsmn.{i}.in_act.weight", None),
    (f"{_FSMN}.norm1.weight", "masker.fsmn.{i}.norm1.weight", None),
    (f"{_FSMN}.norm1.bias", "masker.fsmn.{i}.norm1.bias", None),
    *_ffconvm(f"{_GATED}.to_u", "masker.fsmn.{i}.gated.to_u"),
    *_ffconvm(f"{_GATED}.to_v", "masker.fsmn.{i}.gated.to_v"),
    (f"{_GATED}.fsmn.linear.weight", "masker.fsmn.{i}.gated.fsmn.linear.weight", None),
    (f"{_GATED}.fsmn.linear.bias", "masker.fsmn.{i}.gated.fsmn.linear.bias", None),
    (f"{_GATED}.fsmn.project.weight", "masker.fsmn.{i}.gated.fsmn.project.weight", None),
    (f"{_GATED}.fsmn.conv.conv{{k}}.weight", "masker.fsmn.{i}.gated.fsmn.convs.{j}.weight", "1x1"),
    (f"{_GATED}.fsmn.conv.norm{{k}}.weight", "masker.fsmn.{i}.gated.fsmn.norms.{j}.weight", None),
    (f"{_GATED}.fsmn.conv.norm{{k}}.bias", "masker.fsmn.{i}.gated.fsmn.norms.{j}.bias", None),
    (f"{_GATED}.fsmn.conv.prelu{{k}}.weight", "masker.fsmn.{i}.gated.fsmn.acts.{j}.weight", None),
    (f"{_FSMN}.norm2.weight", "masker.fsmn.{i}.norm2.weight", None),
    (f"{_FSMN}.norm2.bias", "masker.fsmn.{i}.norm2.bias", None),
    (f"{_FSMN}.conv2.weight", "masker.fsmn.{i}.out_conv.weight", "1x1"),
    (f"{_FSMN}.conv2.bias", "masker.fsmn.{i}.out_conv.bias", None),
    ("mask_net.mdl.intra_mdl.norm.weight", "masker.layer_norm.weight", None),
    ("mask_net.mdl.intra_mdl.norm.bias", "masker.layer_norm.bias", None),
    ("mask_net.mdl.intra_norm.weight", "masker.out_norm.weight", None),
    ("mask_net.mdl.intra_norm.bias", "masker.out_norm.bias", None),
]

ROTARY = "masker.rotary.freqs"


def _regex(template: str) -> re.Pattern:
    pattern = re.escape(template)
    for name in ("i", "j", "k"):
        pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P<{name}>\\d+)")
    return re.compile(f"^{pattern}$")


class _Mapping:
    """Both directions of a rule list."""

    def __init__(self, rules: list[tuple[str, str, str | None]], source: str) -> None:
        self.source = source
        self.rules = [(_regex(a), a, _regex(b), b, r) for a, b, r in rules]

    def to_ours(self, key: str) -> tuple[str, str | None] | None:
        for theirs_re, _, _, ours, reshape in self.rules:
            if m := theirs_re.match(key):
                groups = m.groupdict()
                if "k" in groups:
                    groups["j"] = str(int(groups["k"]) - 1)
                return ours.format(**groups), reshape
        return None

    def to_theirs(self, state: Mapping[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
        """audiomask state_dict → the authors' (rotary frequencies repeated for every layer)."""
        out: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            for _, theirs, ours_re, _, reshape in self.rules:
                if m := ours_re.match(key):
                    groups = m.groupdict()
                    if "j" in groups:
                        groups["k"] = str(int(groups["j"]) + 1)
                    value = value.unsqueeze(-1) if reshape == "1x1" else value
                    if key == ROTARY:
                        for i in range(n_layers):
                            out[theirs.format(i=i)] = value
                    else:
                        out[theirs.format(**groups)] = value
                    break
            else:
                raise CheckpointError(f"{self.source}: audiomask tensor {key!r} has no counterpart")
        return out


MODELSCOPE = _Mapping(MODELSCOPE_RULES, "modelscope-mossformer")
CLEARERVOICE = _Mapping(CLEARERVOICE_RULES, "clearervoice-mossformer2")


def _flatten(obj: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """One flat state_dict from a plain one, a package dict, or ModelScope's three files."""
    parts = {"encoder": "encoder", "decoder": "decoder", "masknet": "mask_net", "mask_net": "mask_net"}
    if obj and all(k in parts and isinstance(v, Mapping) for k, v in obj.items()):
        return {f"{parts[name]}.{key}": value for name, sub in obj.items()
                for key, value in unwrap_state_dict(sub)[0].items()}
    state, _ = unwrap_state_dict(obj)
    if state and all(k.startswith("model.") for k in state):  # ClearerVoice's MossFormer2_SS_16K wrapper
        state = {k[len("model."):]: v for k, v in state.items()}
    return state


def _need(state: dict[str, torch.Tensor], key: str, source: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"{source}: state_dict has no {key!r}; is it the right model?")
    return state[key]


def _shape_config(state: dict[str, torch.Tensor], stack: str, source: str) -> dict[str, Any]:
    """Config fields readable from tensor shapes."""
    layer0 = f"{stack}.mossformerM.layers.0"
    enc = _need(state, "encoder.conv1d.weight" if source.startswith("modelscope") else "enc.conv1d.weight", source)
    in_conv = _need(state, "mask_net.conv1d_encoder.weight", source)
    hidden = _need(state, f"{layer0}.to_hidden.mdl.1.weight", source)
    d_model = in_conv.shape[0]
    layers = {int(m.group(1)) for k in state if (m := re.match(re.escape(stack) + r"\.mossformerM\.layers\.(\d+)\.", k))}
    cfg = {
        "n_filters": enc.shape[0], "kernel_size": enc.shape[-1], "stride": enc.shape[-1] // 2,
        "d_model": d_model, "n_layers": max(layers) + 1,
        "qk_dim": _need(state, f"{layer0}.to_qk.mdl.1.weight", source).shape[0],
        "expansion": max(1, hidden.shape[0] // d_model),
        "conv_kernel_size": _need(state, f"{layer0}.to_hidden.mdl.3.sequential.1.conv.weight", source).shape[-1],
        "rotary_dim": 2 * _need(state, f"{layer0}.rotary_pos_emb.freqs", source).shape[0],
        "n_src": max(1, _need(state, "mask_net.conv1d_out.weight", source).shape[0] // d_model),
    }
    return cfg


def _load(model: MossFormer, state: dict[str, torch.Tensor], mapping: _Mapping) -> MossFormer:
    """Check ``state`` against the authors' names and shapes for ``model``, then load it."""
    source = mapping.source
    expected = mapping.to_theirs(model.state_dict(), model.config.n_layers)
    problems = state_dict_problems({k: v.shape for k, v in expected.items()}, state)
    if problems:
        raise CheckpointError(f"{source}: state_dict does not fit {model.name} "
                              f"(config {_summary(model)}): " + "; ".join(problems))
    ours: dict[str, torch.Tensor] = {}
    first_rotary = None
    for key, value in state.items():
        name, reshape = mapping.to_ours(key)
        value = value.squeeze(-1) if reshape == "1x1" else value
        if name == ROTARY:
            if first_rotary is None:
                first_rotary = key
            elif not torch.equal(value, ours[name]):
                raise CheckpointError(
                    f"{source}: {key} differs from {first_rotary}; the rotary frequencies are one "
                    "tensor shared by all layers")
        ours[name] = value.detach().to(torch.float32) if value.is_floating_point() else value
    check_state_dict(model, ours, source)
    model.load_state_dict(ours)
    return model.eval()


def _summary(model: MossFormer) -> str:
    c = model.config
    return f"N={c.n_filters} D={c.d_model} R={c.n_layers} S={c.qk_dim}"


def _build(cls: type[MossFormer], inferred: dict[str, Any], preset: str | None,
           overrides: dict[str, Any]) -> MossFormer:
    values = {**inferred, **overrides}
    if values.get("causal") and "norm" not in overrides:
        values["norm"] = "cLN"
    return build_checked(cls, values, cls.name, preset)


def from_modelscope_mossformer(state_dict: Mapping[str, Any], preset: str | None = None,
                               **overrides: Any) -> MossFormer:
    """The authors' ModelScope ``MossFormer`` → :class:`~audiomask.models.mossformer.MossFormer`.

    The configuration is read from the shapes (N, L, D, R, S, expansion, kernel, rotary width,
    C); 8 kHz is assumed (the released model is 8 kHz), the chunk length g = 256 and
    non-causal weights — pass ``sample_rate=``, ``group_size=`` or ``causal=True`` otherwise.
    """
    state = _flatten(state_dict)
    inferred = _shape_config(state, "mask_net.mdl.att_mdl", MODELSCOPE.source)
    inferred.setdefault("sample_rate", 8000)
    model = _build(MossFormer, inferred, preset, overrides)
    return _load(model, state, MODELSCOPE)


def from_clearervoice_mossformer2(state_dict: Mapping[str, Any], preset: str | None = None,
                                  **overrides: Any) -> MossFormer2:
    """ClearerVoice-Studio ``MossFormer2_SS_16K`` → :class:`~audiomask.models.mossformer.MossFormer2`.

    As :func:`from_modelscope_mossformer`, plus the FSMN bottleneck width, memory order and
    depth from the shapes; 16 kHz is assumed (pass ``sample_rate=8000`` for
    ``MossFormer2_SS_8K``).
    """
    state = _flatten(state_dict)
    stack = "mask_net.mdl.intra_mdl"
    inferred = _shape_config(state, stack, CLEARERVOICE.source)
    fsmn0 = f"{stack}.mossformerM.fsmn.0"
    conv1 = _need(state, f"{fsmn0}.gated_fsmn.fsmn.conv.conv1.weight", CLEARERVOICE.source)
    depth = len({k for k in state if re.match(re.escape(fsmn0) + r"\.gated_fsmn\.fsmn\.conv\.conv\d+\.weight$", k)})
    inferred.update(fsmn_channels=_need(state, f"{fsmn0}.conv1.0.weight", CLEARERVOICE.source).shape[0],
                    fsmn_lorder=(conv1.shape[2] + 1) // 2, fsmn_depth=depth, sample_rate=16000)
    model = _build(MossFormer2, inferred, preset, overrides)
    return _load(model, state, CLEARERVOICE)


def to_modelscope_mossformer(model: MossFormer) -> dict[str, torch.Tensor]:
    """A :class:`MossFormer`'s weights under the ModelScope names (rotary repeated per layer)."""
    return MODELSCOPE.to_theirs(model.state_dict(), model.config.n_layers)


def to_clearervoice_mossformer2(model: MossFormer2) -> dict[str, torch.Tensor]:
    """A :class:`MossFormer2`'s weights under the ClearerVoice names."""
    return CLEARERVOICE.to_theirs(model.state_dict(), model.config.n_layers)
