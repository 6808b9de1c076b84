"""Released checkpoint files, as their authors publish them → audiomask models.

:func:`read_release` takes a file (or the folder a release unpacks to), recognises the layout
from its content, reads the configuration that travels inside the file or beside it, and
converts the weights with :func:`audiomask.interop.convert`. Files are read with
``torch.load(weights_only=True)`` or safetensors only: a pickle that would need arbitrary code
to load is refused, never executed. Every problem is one :class:`CheckpointError` line naming
the file.

Layouts (and where each was read from):

* ``asteroid-convtasnet`` — Asteroid's package dict, ``pytorch_model.bin`` of its model cards:
  ``{"model_name": "ConvTasNet", "state_dict", "model_args", "infos"}``
  (``asteroid/models/base_models.py`` ``BaseModel.serialize``; the hub publisher adds
  ``infos["license_note"]``, ``asteroid/models/publisher.py``). A bare Asteroid state_dict
  (``encoder.filterbank._filters`` …) is read with the default config.
* ``clearervoice-mossformer2`` — ClearerVoice-Studio ``MossFormer2_SS_16K`` / ``_8K``: a folder
  with a text file ``last_best_checkpoint`` naming ``last_best_checkpoint.pt``, a dict whose
  ``"model"`` holds the inner ``MossFormer``'s state_dict (``enc.``, ``mask_net.``, ``dec.``),
  possibly under ``module.`` (``clearvoice/networks.py`` ``SpeechModel.load_model``). The rate is
  not stored: 16 kHz unless the folder is named ``…_8K``.
* ``modelscope-mossformer`` — ModelScope ``damo/speech_mossformer_separation_temporal_8k``:
  ``encoder.bin``, ``decoder.bin``, ``masknet.bin`` and ``configuration.json`` in one folder
  (``modelscope/models/audio/separation/mossformer.py`` ``MossFormer.load_check_point``; the
  ``model`` section of the configuration holds its keyword arguments ``num_spks``,
  ``group_size``, ``causal`` …); a combined ``pytorch_model.bin`` with the configuration beside
  it is read too.
* ``look2hear-tiger`` — look2hear TIGER (``JusperLee/TIGER-speech``): look2hear's ``BaseModel``
  is a huggingface_hub ``PyTorchModelHubMixin`` (``look2hear/models/base_model.py``), read with
  ``TIGER.from_pretrained``: ``model.safetensors`` (``pytorch_model.bin`` with older hub
  versions) and the ``config.json`` of the model's ``__init__`` arguments (``num_blocks`` = FFI
  iterations, ``sample_rate``, ``win``, ``stride``, ``out_channels`` …); also ``serialize``'s
  package (``model_name``/``model_args``/``state_dict``) and Lightning checkpoints, whose keys
  start with ``audio_model.`` (``BaseModel.load_state_dict_in_audio``).
* ``naplab-convtasnet`` — the Conv-TasNet authors' ``TasNet`` state_dict.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from audiomask.interop import convert
from audiomask.models.checkpoint import CheckpointError, safetensors_metadata

# Unique keys that tell each layout apart (after wrapper prefixes are removed).
_MARKERS = [
    ("asteroid-convtasnet", "encoder.filterbank._filters"),
    ("naplab-convtasnet", "TCN.BN.weight"),
    ("clearervoice-mossformer2", "enc.conv1d.weight"),
    ("modelscope-mossformer", "encoder.conv1d.weight"),
    ("look2hear-tiger", "BN.0.0.weight"),
]
_WRAPPERS = ("module.", "model.", "audio_model.")
# What the converters raise on tensors or values of a shape or type no release has.
_MALFORMED = (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError, RuntimeError, AttributeError)
_MODELSCOPE_PARTS = ("encoder.bin", "decoder.bin", "masknet.bin")
# look2hear TIGER __init__ arguments → audiomask config fields (sizes are read from the shapes).
_TIGER_ARGS = {"num_blocks": "n_iter", "sample_rate": "sample_rate", "win": "win", "stride": "hop"}
# ModelScope MossFormer keyword arguments that shapes cannot tell.
_MODELSCOPE_ARGS = {"num_spks": "n_src", "group_size": "group_size", "causal": "causal"}


def read_release(path: str | Path, **overrides: Any) -> tuple[torch.nn.Module, dict[str, str]]:
    """The audiomask model of the released checkpoint at ``path`` (file or folder) and its
    provenance: ``source_format``, ``origin`` (the file read) and ``license`` where the release
    states one. ``overrides`` are config fields that win over what the release says (e.g.
    ``sample_rate`` of a registry entry)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.is_dir():
        path = _main_file(path)
    if path.name == "last_best_checkpoint" and _is_text(path):
        path = _clearervoice_target(path)
    if path.name in _MODELSCOPE_PARTS:
        return _modelscope_folder(path.parent, overrides)
    obj = read_weights(path)
    provenance = {"origin": str(path.resolve())}
    try:
        model, fmt, license_text = _convert_object(obj, path, overrides)
    except CheckpointError as e:
        raise CheckpointError(_named(path, e)) from None
    except _MALFORMED as e:  # shapes or values no release has (a tensor of the wrong rank, …)
        raise CheckpointError(f"{path}: malformed checkpoint ({type(e).__name__}: {_first_line(e)})") from None
    provenance["source_format"] = fmt
    if license_text:
        provenance["license"] = license_text
    return model, provenance


def read_weights(path: Path) -> Any:
    """A checkpoint file's content: safetensors → ``{name: tensor}``; anything else through
    ``torch.load(weights_only=True)`` (tensors, numbers, strings and containers only)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if safetensors_metadata(path) is not None:
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:
            raise CheckpointError(f"{path}: cannot read the safetensors tensors ({_first_line(e)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(f"{path}: refused: the file needs arbitrary code to unpickle{what}; only tensors and "
                              "plain containers are read (torch.load weights_only=True)") from None
    except Exception as e:  # truncated zip, not a pickle at all, …
        raise CheckpointError(f"{path}: not a readable PyTorch or safetensors checkpoint ({_first_line(e)})") from None


def identify(state: Mapping[str, Any]) -> str | None:
    """The layout of a (prefix-free) state_dict, or ``None``."""
    for fmt, marker in _MARKERS:
        if marker in state:
            return fmt
    return None


def _convert_object(obj: Any, path: Path, forced: dict[str, Any]) -> tuple[torch.nn.Module, str, str | None]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"unknown format: the file holds a {type(obj).__name__}, not a state_dict or "
                              "checkpoint dict")
    if isinstance(obj.get("model_name"), str) and isinstance(obj.get("state_dict"), Mapping):
        return _package(obj, forced)
    state = _strip_wrappers(_inner_state(obj))
    fmt = identify(state)
    if fmt is None:
        sample = ", ".join(list(state)[:3]) or "no tensors"
        raise CheckpointError(f"unknown format: no known release layout (Asteroid, ClearerVoice, ModelScope, "
                              f"look2hear, naplab) has keys like {sample}")
    overrides: dict[str, Any] = {}
    if fmt == "look2hear-tiger":
        overrides = _tiger_config(path.parent / "config.json", path)
    elif fmt == "modelscope-mossformer":
        overrides = _modelscope_config(path.parent / "configuration.json")
    elif fmt == "clearervoice-mossformer2" and re.search(r"_8k$", path.parent.name, re.IGNORECASE):
        overrides = {"sample_rate": 8000}  # ClearerVoice's MossFormer2_SS_8K folder
    return convert(fmt, state, **{**overrides, **forced}), fmt, None


def _package(obj: Mapping[str, Any], forced: dict[str, Any]) -> tuple[torch.nn.Module, str, str | None]:
    """Asteroid's (and look2hear's) ``serialize`` package."""
    name = obj["model_name"]
    args = obj.get("model_args") or {}
    if not isinstance(args, Mapping):
        raise CheckpointError("model_args is not a dict")
    infos = obj.get("infos") if isinstance(obj.get("infos"), Mapping) else {}
    license_text = infos.get("license_note") if isinstance(infos.get("license_note"), str) else None
    state = _strip_wrappers(_inner_state(obj))
    if name == "ConvTasNet":
        package = {"model_args": _integral_rate(dict(args)), "state_dict": state}
        return convert("asteroid-convtasnet", package, **forced), "asteroid-convtasnet", license_text
    if name == "TIGER":
        overrides = {ours: args[theirs] for theirs, ours in _TIGER_ARGS.items() if theirs in args}
        values = {**_integral_rate(overrides), **forced}
        return convert("look2hear-tiger", state, **values), "look2hear-tiger", license_text
    raise CheckpointError(f"unsupported model {name!r} in an Asteroid/look2hear package; supported: ConvTasNet, TIGER")


def _integral_rate(values: dict[str, Any]) -> dict[str, Any]:
    """Asteroid stores ``sample_rate`` as a float (``8000.0``); audiomask's is an int."""
    rate = values.get("sample_rate")
    if isinstance(rate, float) and rate.is_integer():
        values["sample_rate"] = int(rate)
    return values


def _inner_state(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    for key in ("state_dict", "model"):
        if isinstance(obj.get(key), Mapping):
            return obj[key]
    return obj


def _strip_wrappers(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Tensors only, without the prefixes that wrappers add to every key (DataParallel's
    ``module.``, ClearerVoice's ``model.``, look2hear Lightning's ``audio_model.``)."""
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    changed = True
    while changed and tensors:
        changed = False
        for prefix in _WRAPPERS:
            if all(k.startswith(prefix) for k in tensors):
                tensors = {k[len(prefix):]: v for k, v in tensors.items()}
                changed = True
    return tensors


def _tiger_config(config_path: Path, weights: Path) -> dict[str, Any]:
    if not config_path.is_file():
        raise CheckpointError(f"look2hear TIGER weights do not store the FFI iteration count: put the release's "
                              f"config.json beside {weights.name} (JusperLee/TIGER-speech has one)")
    config = _read_json(config_path)
    return _integral_rate({ours: config[theirs] for theirs, ours in _TIGER_ARGS.items() if theirs in config})


def _modelscope_config(config_path: Path) -> dict[str, Any]:
    if not config_path.is_file():
        return {}
    section = _read_json(config_path).get("model", {})
    if not isinstance(section, Mapping):
        raise CheckpointError(f"{config_path}: 'model' is not an object")
    values = {ours: section[theirs] for theirs, ours in _MODELSCOPE_ARGS.items() if theirs in section}
    if "sample_rate" in section:
        values["sample_rate"] = section["sample_rate"]
    return _integral_rate(values)


def _modelscope_folder(folder: Path, forced: dict[str, Any]) -> tuple[torch.nn.Module, dict[str, str]]:
    """ModelScope's three weight files (and ``configuration.json``) in ``folder``."""
    missing = [name for name in _MODELSCOPE_PARTS if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"{folder / missing[0]}: missing; a ModelScope MossFormer folder holds "
                              f"{', '.join(_MODELSCOPE_PARTS)} and configuration.json")
    parts = {}
    for name in _MODELSCOPE_PARTS:
        obj = read_weights(folder / name)
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"{folder / name}: not a state_dict")
        parts[name.removesuffix(".bin")] = _strip_wrappers(obj)
    try:
        values = {**_modelscope_config(folder / "configuration.json"), **forced}
        model = convert("modelscope-mossformer", parts, **values)
    except CheckpointError as e:
        raise CheckpointError(_named(folder, e)) from None
    except _MALFORMED as e:
        raise CheckpointError(f"{folder}: malformed checkpoint ({type(e).__name__}: {_first_line(e)})") from None
    return model, {"source_format": "modelscope-mossformer", "origin": str(folder.resolve())}


def _main_file(folder: Path) -> Path:
    """The file a release folder is read from."""
    for name in ("last_best_checkpoint", *_MODELSCOPE_PARTS[:1], "model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"{folder}: no release layout found (looked for last_best_checkpoint, encoder.bin, "
                          "model.safetensors, pytorch_model.bin)")


def _clearervoice_target(pointer: Path) -> Path:
    name = pointer.read_text(errors="replace").strip().splitlines()
    target = pointer.parent / name[0].strip() if name else pointer
    if not name or target.parent != pointer.parent or not target.is_file():
        raise CheckpointError(f"{pointer}: names {name[0] if name else 'nothing'!r}, which is not a file beside it")
    return target


def _is_text(path: Path) -> bool:
    try:
        head = path.read_bytes()[:256]
    except OSError:
        return False
    return len(head) < 256 and b"\0" not in head and head.strip() != b""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not readable JSON ({_first_line(e)})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _named(path: Path, error: Exception) -> str:
    """``error``'s message with the file named first (converters name their source format)."""
    message = str(error)
    return message if message.startswith(str(path)) else f"{path}: {message}"


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
