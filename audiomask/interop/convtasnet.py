"""Conv-TasNet weights from Asteroid (``asteroid.models.ConvTasNet``) and from the authors'
code (naplab ``conv_tasnet.TasNet``). Both hold the same tensors under other names."""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from audiomask.models.checkpoint import CheckpointError, build_checked, check_state_dict
from audiomask.models.convtasnet import ConvTasNet

# Asteroid's norm names → audiomask's (Asteroid's "cLN" is channel-wise, "cgLN" cumulative).
ASTEROID_NORMS = {"gLN": "gLN", "cLN": "chanLN", "cgLN": "cLN"}
ASTEROID_ARGS = ("n_src", "n_filters", "kernel_size", "stride", "bn_chan", "hid_chan",
                 "skip_chan", "conv_kernel_size", "n_blocks", "n_repeats", "mask_act",
                 "causal", "sample_rate", "encoder_activation")

_ASTEROID_BLOCK = {"shared_block.0": "in_conv", "shared_block.1": "in_act",
                   "shared_block.2": "in_norm", "shared_block.3": "dw_conv",
                   "shared_block.4": "dw_act", "shared_block.5": "dw_norm",
                   "res_conv": "res_conv", "skip_conv": "skip_conv"}
_NAPLAB_BLOCK = {"conv1d": "in_conv", "nonlinearity1": "in_act", "reg1": "in_norm",
                 "dconv1d": "dw_conv", "nonlinearity2": "dw_act", "reg2": "dw_norm",
                 "res_out": "res_conv", "skip_out": "skip_conv"}


def unwrap_state_dict(obj: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, model_args) from a plain state_dict or a package dict."""
    args: dict[str, Any] = dict(obj.get("model_args") or {}) if "model_args" in obj else {}
    for key in ("state_dict", "model"):
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    state = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return state, args


def _rename(state: dict[str, torch.Tensor], rules: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        new = key
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, new)
            if n:
                break
        out[new] = value
    return out


def _shape_config(state: dict[str, torch.Tensor], enc: str, bottleneck: str, block: str,
                  in_conv: str, dw_conv: str, skip: str, out_conv: str, source: str) -> dict[str, Any]:
    """Config fields readable from tensor shapes."""
    for key in (enc, bottleneck, out_conv, f"{block}0.{in_conv}.weight", f"{block}0.{dw_conv}.weight"):
        if key not in state:
            raise CheckpointError(f"{source}: state_dict has no {key!r}; is it a Conv-TasNet?")
    n_filters, _, kernel_size = state[enc].shape
    n_total = len({m.group(1) for k in state if (m := re.match(re.escape(block) + r"(\d+)\.", k))})
    n_blocks = 8 if n_total % 8 == 0 else n_total
    cfg = {
        "n_filters": n_filters, "kernel_size": kernel_size, "stride": kernel_size // 2,
        "bn_chan": state[bottleneck].shape[0],
        "hid_chan": state[f"{block}0.{in_conv}.weight"].shape[0],
        "conv_kernel_size": state[f"{block}0.{dw_conv}.weight"].shape[-1],
        "skip_chan": state[f"{block}0.{skip}.weight"].shape[0] if f"{block}0.{skip}.weight" in state else 0,
        "n_blocks": n_blocks, "n_repeats": n_total // n_blocks, "_total_blocks": n_total,
    }
    cfg["n_src"] = state[out_conv].shape[0] // n_filters
    return cfg


def _finish(inferred: dict[str, Any], state: dict[str, torch.Tensor], preset: str | None,
            overrides: dict[str, Any], source: str) -> ConvTasNet:
    """Config = preset values, then what the weights tell, then the caller's overrides."""
    total = inferred.pop("_total_blocks")
    values = {**inferred, **overrides}
    if "n_blocks" in overrides and "n_repeats" not in overrides:
        values["n_repeats"] = max(1, total // overrides["n_blocks"])
    if values.get("causal") and values.get("norm", "gLN") == "gLN" and "norm" not in overrides:
        values["norm"] = "cLN"
    model = build_checked(ConvTasNet, values, source, preset)
    check_state_dict(model, state, source)
    model.load_state_dict(state)
    return model.eval()


def from_asteroid_convtasnet(state_dict: Mapping[str, Any], preset: str | None = None,
                             **overrides: Any) -> ConvTasNet:
    """Asteroid ``ConvTasNet`` (free filterbank) → :class:`ConvTasNet` with ``framing="valid"``.

    Asteroid frames without padding and zero-pads the output at the end; the converted model
    reproduces that. Its ``model_args``, when present in a package dict, set the config;
    otherwise the norm is taken to be gLN: pass audiomask field names for other models
    (Asteroid ``norm_type="cLN"`` is ``norm="chanLN"`` here, ``"cgLN"`` is ``norm="cLN"``).
    """
    state, args = unwrap_state_dict(state_dict)
    if str(args.get("fb_name", "free")).lower() not in ("free", "freefb"):
        raise CheckpointError(f"asteroid-convtasnet: only the 'free' filterbank maps, got {args['fb_name']!r}")
    state = _rename(state, [
        (r"^encoder\.filterbank\._filters$", "encoder.conv.weight"),
        (r"^decoder\.filterbank\._filters$", "decoder.conv.weight"),
        (r"^masker\.bottleneck\.0\.gamma$", "masker.input_norm.weight"),
        (r"^masker\.bottleneck\.0\.beta$", "masker.input_norm.bias"),
        (r"^masker\.bottleneck\.1\.", "masker.bottleneck."),
        (r"^masker\.mask_net\.0\.", "masker.out_act."),
        (r"^masker\.mask_net\.1\.", "masker.out_conv."),
    ])
    renamed = {}
    for key, value in state.items():
        m = re.match(r"^masker\.TCN\.(\d+)\.(shared_block\.\d|res_conv|skip_conv)(?:\.0)?\.(\w+)$", key)
        if m and m.group(2) in _ASTEROID_BLOCK:
            leaf = {"gamma": "weight", "beta": "bias"}.get(m.group(3), m.group(3))
            key = f"masker.blocks.{m.group(1)}.{_ASTEROID_BLOCK[m.group(2)]}.{leaf}"
        renamed[key] = value
    cfg = _shape_config(renamed, "encoder.conv.weight", "masker.bottleneck.weight",
                        "masker.blocks.", "in_conv", "dw_conv", "skip_conv",
                        "masker.out_conv.weight", "asteroid-convtasnet")
    cfg["framing"] = "valid"
    for name in ASTEROID_ARGS:
        if name in args and args[name] is not None:
            cfg[name] = args[name]
    if isinstance(cfg.get("sample_rate"), float) and cfg["sample_rate"].is_integer():
        cfg["sample_rate"] = int(cfg["sample_rate"])  # Asteroid keeps the rate as a float (8000.0)
    if "norm_type" in args:
        if args["norm_type"] not in ASTEROID_NORMS:
            raise CheckpointError(f"asteroid-convtasnet: norm {args['norm_type']!r} has no audiomask equivalent")
        cfg["norm"] = ASTEROID_NORMS[args["norm_type"]]
    if cfg.get("causal") and cfg.get("norm") == "gLN":
        cfg["norm"] = "chanLN"  # what Asteroid itself switches a causal gLN model to
    return _finish(cfg, renamed, preset, overrides, "asteroid-convtasnet")


def from_naplab_convtasnet(state_dict: Mapping[str, Any], preset: str | None = None,
                           **overrides: Any) -> ConvTasNet:
    """The authors' ``TasNet`` (naplab/Conv-TasNet) → :class:`ConvTasNet` (``framing="centered"``).

    Their causal models store cLN gains as ``[1, C, 1]`` under ``gain``; that is detected and
    sets ``causal=True, norm="cLN"``. The sample rate cannot be read from weights: 8 kHz is
    assumed for L=16 and 16 kHz for L=32 (the authors' 2 ms window); pass ``sample_rate=``.
    """
    state, _ = unwrap_state_dict(state_dict)
    causal = "TCN.LN.gain" in state
    renamed = {}
    for key, value in state.items():
        new = key
        if key in ("encoder.weight", "decoder.weight"):
            new = key.replace(".weight", ".conv.weight")
        elif key.startswith("TCN.LN."):
            new = "masker.input_norm." + {"gain": "weight"}.get(key[7:], key[7:])
        elif key.startswith("TCN.BN."):
            new = "masker.bottleneck." + key[7:]
        elif key.startswith("TCN.output.0."):
            new = "masker.out_act." + key[13:]
        elif key.startswith("TCN.output.1."):
            new = "masker.out_conv." + key[13:]
        elif m := re.match(r"^TCN\.TCN\.(\d+)\.(\w+)\.(\w+)$", key):
            if m.group(2) in _NAPLAB_BLOCK:
                leaf = {"gain": "weight"}.get(m.group(3), m.group(3))
                new = f"masker.blocks.{m.group(1)}.{_NAPLAB_BLOCK[m.group(2)]}.{leaf}"
        if new.endswith("norm.weight") or new.endswith("norm.bias"):
            value = value.reshape(-1)  # cLN keeps [1, C, 1]
        renamed[new] = value
    cfg = _shape_config(renamed, "encoder.conv.weight", "masker.bottleneck.weight",
                        "masker.blocks.", "in_conv", "dw_conv", "skip_conv",
                        "masker.out_conv.weight", "naplab-convtasnet")
    cfg["framing"] = "centered"
    cfg["sample_rate"] = 8000 if cfg["kernel_size"] <= 16 else 16000
    if causal:
        cfg.update(causal=True, norm="cLN")
    return _finish(cfg, renamed, preset, overrides, "naplab-convtasnet")
