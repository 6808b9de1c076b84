"""TIGER weights from the authors' look2hear code (``look2hear.models.tiger.TIGER``).

The look2hear names map onto audiomask's modules one to one:

============================================  ===============================================
look2hear                                     audiomask (under ``masker.``)
============================================  ===============================================
``BN.k.0`` / ``BN.k.1``                       ``band_split.bands.k.norm`` / ``.proj``
``separator.freq_path.0`` / ``frame_path.0``  ``separator.block.freq_msa`` / ``frame_msa``
``separator.freq_path.1`` / ``frame_path.1``  ``separator.block.freq_attn`` / ``frame_attn``
``separator.freq_path.2`` / ``frame_path.2``  ``separator.block.freq_norm`` / ``frame_norm``
``separator.concat_block.0`` / ``.1``         ``separator.fuse_conv`` / ``fuse_act``
``mask.k.0`` / ``mask.k.1``                   ``mask_heads.k.act`` / ``.conv``
============================================  ===============================================

inside the multi-scale blocks ``proj_1x1`` → ``in_proj``, ``spp_dw`` → ``down``,
``loc_glo_fus`` → ``fuse``, ``globalatt`` → ``global_mlp``, ``last_layer`` → ``up``,
``res_conv`` → ``out_proj``, ``local_embedding``/``global_embedding``/``global_act`` →
``local_conv``/``global_conv``/``gate_conv``; inside the attention ``Queries``/``Keys``/
``Values``/``attn_concat_proj`` → ``queries``/``keys``/``values``/``out_proj``; the channel
layer norms' ``gamma``/``beta`` ``[1, C, 1, 1]`` become ``weight``/``bias`` ``[C]``.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from audiomask.interop.convtasnet import unwrap_state_dict
from audiomask.maskers.tiger import band_widths
from audiomask.models.checkpoint import CheckpointError, build_checked, check_state_dict
from audiomask.state_dicts import state_dict_problems
from audiomask.models.tiger import TIGER

SOURCE = "look2hear-tiger"

_MSA = {  # inside a multi-scale block
    "proj_1x1": "in_proj", "spp_dw": "down", "loc_glo_fus": "fuse", "globalatt": "global_mlp",
    "last_layer": "up", "res_conv": "out_proj", "local_embedding": "local_conv",
    "global_embedding": "global_conv", "global_act": "gate_conv",
}
_ATTN = {"Queries": "queries", "Keys": "keys", "Values": "values", "attn_concat_proj": "out_proj"}
_LN4D = {"gamma": "weight", "beta": "bias"}

# (look2hear prefix, audiomask prefix, renames below it, where the LayerNormalization4D leaves
# are: the parent segment's name, "" for the prefix itself, None for nowhere)
_RULES: list[tuple[str, str, dict[str, str], str | None]] = [
    ("BN.{i}.0", "masker.band_split.bands.{i}.norm", {}, None),
    ("BN.{i}.1", "masker.band_split.bands.{i}.proj", {}, None),
    ("mask.{i}.0", "masker.mask_heads.{i}.act", {}, None),
    ("mask.{i}.1", "masker.mask_heads.{i}.conv", {}, None),
    ("separator.concat_block.0", "masker.separator.fuse_conv", {}, None),
    ("separator.concat_block.1", "masker.separator.fuse_act", {}, None),
    ("separator.{p}_path.0", "masker.separator.block.{p}_msa", _MSA, None),
    ("separator.{p}_path.1", "masker.separator.block.{p}_attn", _ATTN, "norm"),
    ("separator.{p}_path.2", "masker.separator.block.{p}_norm", {}, ""),
]


def _prefix_regex(template: str) -> re.Pattern[str]:
    pattern = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>freq|frame)")
    return re.compile(pattern + r"\.")


def _translate(key: str, to_audiomask: bool) -> str:
    for l2h, am, renames, ln4d_parent in _RULES:
        src, dst = (l2h, am) if to_audiomask else (am, l2h)
        m = _prefix_regex(src).match(key)
        if not m:
            continue
        names = renames if to_audiomask else {v: k for k, v in renames.items()}
        leaves = _LN4D if to_audiomask else {v: k for k, v in _LN4D.items()}
        *path, leaf = key[m.end():].split(".")
        if ln4d_parent is not None and (path[-1] if path else "") == ln4d_parent:
            leaf = leaves.get(leaf, leaf)
        return ".".join([dst.format(**m.groupdict()), *(names.get(s, s) for s in path), leaf])
    return key


def audiomask_key(key: str) -> str:
    """The audiomask state-dict name of look2hear's ``key`` (unchanged if it is not TIGER's)."""
    return _translate(key, to_audiomask=True)


def look2hear_key(key: str) -> str:
    """The look2hear state-dict name of audiomask's ``key`` (inverse of :func:`audiomask_key`)."""
    return _translate(key, to_audiomask=False)


def _inferred_config(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Config fields readable from tensor shapes (sample rate and iterations are not)."""
    needed = ["BN.0.0.weight", "BN.0.1.weight", "mask.0.1.weight",
              "separator.freq_path.0.proj_1x1.conv.weight",
              "separator.freq_path.1.Queries.0.conv.weight"]
    for key in needed:
        if key not in state:
            raise CheckpointError(f"{SOURCE}: state_dict has no {key!r}; is it a look2hear TIGER?")
    n_bands = len({m.group(1) for k in state if (m := re.match(r"^BN\.(\d+)\.0\.weight$", k))})
    widths = [state[f"BN.{k}.0.weight"].shape[0] // 2 if f"BN.{k}.0.weight" in state else 0
              for k in range(n_bands)]
    feature_dim = state["BN.0.1.weight"].shape[0]
    inferred = {"win": 2 * (sum(widths) - 1)} if 0 not in widths else {}  # n_fft // 2 + 1 bins
    return {
        "_widths": widths,
        **inferred,
        "feature_dim": feature_dim,
        "hidden_dim": state["separator.freq_path.0.proj_1x1.conv.weight"].shape[0],
        "depth": len({m.group(1) for k in state
                      if (m := re.match(r"^separator\.freq_path\.0\.spp_dw\.(\d+)\.", k))}),
        "n_heads": len({m.group(1) for k in state
                        if (m := re.match(r"^separator\.freq_path\.1\.Queries\.(\d+)\.", k))}),
        "qk_dim": state["separator.freq_path.1.Queries.0.conv.weight"].shape[0],
        "n_src": feature_dim // state["mask.0.1.weight"].shape[1],
    }


def from_look2hear_tiger(state_dict: Mapping[str, Any], preset: str | None = None,
                         **overrides: Any) -> TIGER:
    """The authors' ``TIGER`` (look2hear) → :class:`~audiomask.models.tiger.TIGER`.

    Accepts a plain state_dict (the released ``model.safetensors``/``.bin``), a look2hear
    package (``{"state_dict": …}``) or a Lightning checkpoint (``audio_model.`` prefixes).
    Channel sizes, depth, heads, sources and the STFT size are read from the shapes. The FFI
    weights are shared by all iterations, so their number is not in the weights: pass
    ``preset="large"`` (8) or ``"small"`` (4), or ``n_iter=``. The sample rate cannot be read
    either: 16 kHz is assumed (the released models') unless ``sample_rate=`` is given, and the
    checkpoint's sub-band widths must equal that rate's layout.
    """
    if preset is None and "n_iter" not in overrides:
        raise ValueError(f"{SOURCE}: the number of FFI iterations is not stored in the weights "
                         "(they are shared); pass preset='large' (8), preset='small' (4) or n_iter=")
    state, _ = unwrap_state_dict(state_dict)
    state = {k.removeprefix("audio_model."): v for k, v in state.items()}
    inferred = _inferred_config(state)
    widths = inferred.pop("_widths")
    values = {"sample_rate": 16000, **inferred, **overrides}
    model = build_checked(TIGER, values, SOURCE, preset)
    expected = band_widths(model.config.sample_rate, model.config.win)
    if 0 not in widths and widths != expected:  # a missing band is reported by name below
        raise CheckpointError(
            f"{SOURCE}: sub-band widths {widths} do not match the {len(expected)}-band layout of "
            f"{model.config.sample_rate} Hz with n_fft {model.config.win} ({expected}); "
            "pass the checkpoint's sample_rate="
        )
    converted = {}
    for key, value in state.items():
        if key.endswith((".gamma", ".beta")) and value.dim() == 4:
            value = value.reshape(-1)  # LayerNormalization4D keeps [1, C, 1, 1]
        converted[audiomask_key(key)] = value
    _check_look2hear_names(model, state)
    check_state_dict(model, converted, SOURCE)
    model.load_state_dict(converted)
    return model.eval()


def _check_look2hear_names(model: TIGER, state: dict[str, torch.Tensor]) -> None:
    """Raise :class:`CheckpointError` naming (in look2hear's names) every missing, unexpected
    or mis-shaped tensor."""
    expected = {}
    for key, value in model.state_dict().items():
        theirs = look2hear_key(key)
        expected[theirs] = (1, value.numel(), 1, 1) if theirs.endswith((".gamma", ".beta")) else value.shape
    problems = state_dict_problems(expected, state)
    if problems:
        raise CheckpointError(f"{SOURCE}: state_dict does not fit TIGER(n_src={model.n_src}, "
                              f"{model.config.sample_rate} Hz): " + "; ".join(problems))
