"""``audiomask info``, ``audiomask convert`` and ``audiomask list``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from audiomask.cli.common import CLIError, load_model_arg_with_provenance


def cmd_info(args: argparse.Namespace) -> int:
    from audiomask.models.checkpoint import describe

    model, stored = load_model_arg_with_provenance(args.model)
    summary = describe(model)
    summary["metadata"] = {k: v for k, v in sorted(stored.items()) if k not in _INFO_HIDDEN}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"model            {summary['model']}")
    print(f"parameters       {summary['parameters']:,}")
    print(f"sample rate      {summary['sample_rate']} Hz")
    print(f"sources          {summary['n_src']}")
    print(f"causal           {'yes' if summary['causal'] else 'no'}")
    rf = summary["receptive_field_samples"]
    if rf is None:
        print("receptive field  unbounded (every output sample depends on the whole input)")
    else:
        print(f"receptive field  {rf} samples ({1000 * rf / summary['sample_rate']:.1f} ms)")
    if summary["metadata"]:
        print("stored metadata (provenance, training, validation)")
        for key, value in summary["metadata"].items():
            print(f"  {key:<20} {value}")
    print("config")
    for key, value in summary["config"].items():
        print(f"  {key:<20} {value}")
    return 0


# Metadata fields `info` does not repeat (shown above or structural).
_INFO_HIDDEN = {"config", "model", "sample_rate", "format"}


def cmd_convert(args: argparse.Namespace) -> int:
    from audiomask.models.checkpoint import save_model

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise CLIError(f"--out {out}: the native checkpoint is a .safetensors file")
    if out.exists() and not args.overwrite:
        raise CLIError(f"--out {out}: exists; pass --overwrite to replace it")
    if out.is_dir():
        raise CLIError(f"--out {out}: is a folder")
    model, provenance = load_model_arg_with_provenance(args.source)
    if not provenance:
        raise CLIError(f"{args.source}: random weights; give a checkpoint file, folder or hf:OWNER/REPO")
    from audiomask import __version__

    keep = {k: v for k, v in provenance.items() if k not in _INFO_HIDDEN | {"format_version", "audiomask_version"}}
    keep.setdefault("source_format", "audiomask")
    keep["converted_by"] = f"audiomask {__version__}"
    try:
        save_model(model, out, metadata=keep)
    except OSError as e:
        raise CLIError(f"--out {out}: cannot write ({e.strerror or e})") from None
    if not args.quiet:
        print(out)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from audiomask.models.checkpoint import pretrained_models, read_metadata
    from audiomask.models.registry import describe_model, describe_preset, list_models

    if args.published:
        from audiomask.published import RELEASES

        print("published releases (audiomask separate --model FILE_OR_FOLDER_OR_hf:REPO mix.wav --out DIR):")
        for r in RELEASES:
            where = f"hf:{r.hub_id}" if r.hub_id else r.page
            print(f"  {r.name:<34} {where}")
            print(f"  {'':<34} {r.task}; {r.sample_rate // 1000} kHz; format {r.format}; files "
                  f"{', '.join(r.files)}; licence {r.license}"
                  + (f"; {r.paper_result}" if r.paper_result else ""))
        return 0
    print("architectures (NAME:PRESET):")
    for name, presets in list_models().items():
        print(f"  {name:<14} {describe_model(name)}")
        for preset in presets:
            print(f"    {name + ':' + preset:<26} {describe_preset(name, preset)}")
    bundled = pretrained_models()
    print("bundled trained models:" if bundled else "bundled trained models: none")
    for name, path in bundled.items():
        meta = read_metadata(path)
        quality = f"validation SI-SDRi {meta['valid_si_sdri']} dB; " if "valid_si_sdri" in meta else ""
        print(f"  {name:<28} {meta['model']}, {int(meta['sample_rate']) // 1000} kHz; {quality}{path}")
    print("published releases of other toolkits: audiomask list --published")
    return 0
