"""``audiomask separate`` and ``audiomask evaluate``."""

from __future__ import annotations

import argparse
import logging
import math
from typing import Sequence

import torch

from audiomask.audio import AudioError
from audiomask.cli.common import (
    CLIError,
    cli_message,
    load_model_arg,
    refuse_echo_canceller,
    resolve_device,
    show_progress,
)

_log = logging.getLogger(__name__)


def cmd_separate(args: argparse.Namespace) -> int:
    from audiomask.outputs import OUTPUT_FORMATS, expand_inputs, plan_separation
    from audiomask.runtime import apply_threads
    from audiomask.separation import separate_planned

    if args.spectrogram:
        from audiomask.plot import PLOT_EXTRA_HINT, have_matplotlib

        if not have_matplotlib():
            raise CLIError(f"--spectrogram: {PLOT_EXTRA_HINT}")
    inputs, errors, notes = expand_inputs(args.inputs)
    if args.ref and (len(args.inputs) != 1 or len(inputs) != 1):
        raise CLIError("--ref scores one input: give exactly one IN (a file) with --ref")
    for line in notes if not args.quiet else []:
        _log.info("%s", line)
    device = resolve_device(args.device)
    apply_threads(args.threads, "batch")
    model = load_model_arg(args.model, device)
    refuse_echo_canceller(model, args.model)
    if args.shifts != 1:
        from audiomask.separation import ShiftAveraged

        try:
            model = ShiftAveraged(model, args.shifts)
        except ValueError as e:
            raise CLIError(f"--shifts: {e}") from None
    if args.ref and len(args.ref) != model.n_src:
        raise CLIError(f"--ref: the model separates {model.n_src} sources, got {len(args.ref)} references")
    plans, plan_errors = plan_separation(inputs, args.out, model.n_src, args.overwrite,
                                         extras=["_spectrogram.png"] if args.spectrogram else [])
    errors += plan_errors
    for message in errors:
        _log.error("%s", cli_message(message))
    failed = len(errors)
    results = separate_planned(model, plans, OUTPUT_FORMATS[args.format], args.downmix, args.chunk,
                               progress=show_progress(args))
    for plan, result in zip(plans, results):
        if isinstance(result, AudioError):
            _log.error("%s", cli_message(result))
            failed += 1
            continue
        if result.peak_scale < 1.0:
            _log.warning("%s: the estimates would peak above full scale; all of its outputs were scaled "
                         "down by %.1f dB so none clips", result.input, -20 * math.log10(result.peak_scale))
        if not args.quiet:
            print("\n".join(map(str, result.paths)))
        if args.spectrogram:
            from audiomask.plot import spectrograms_png

            signals = {"mixture": result.mixture}
            signals.update({f"estimate {i + 1}": e for i, e in enumerate(result.estimates)})
            png = spectrograms_png(plan.extras[0], signals, result.sample_rate)
            if not args.quiet:
                print(png)
        if args.ref:
            print(score_against_references(result, args.ref, model.sample_rate))
    return 1 if failed else 0


def score_against_references(result, ref_paths: Sequence[str], rate: int) -> str:
    """SI-SDR and SI-SDRi (dB, best permutation) of a separated file against reference files,
    at ``rate`` (the model's, as ``audiomask evaluate`` scores). Memory: a few copies of the
    signals, nothing quadratic in their length."""
    from audiomask.audio import read_audio, resample
    from audiomask.evaluate import score_si_sdr

    mix = resample(result.mixture, result.sample_rate, rate)
    refs = []
    for path in ref_paths:
        wav, _ = read_audio(path, sample_rate=rate, channels=1)
        if wav.shape[-1] != mix.shape[-1]:
            raise CLIError(f"{path}: {wav.shape[-1]} samples at {rate} Hz, the mixture has {mix.shape[-1]}")
        refs.append(wav[0])
    refs = torch.stack(refs)
    per_source, baseline = score_si_sdr(result.model_estimates, refs, mix)
    improvement = per_source - baseline
    lines = [f"{'reference':<40} {'SI-SDR':>8} {'SI-SDRi':>8}   (dB, at {rate} Hz)"]
    for path, a, b in zip(ref_paths, per_source.tolist(), improvement.tolist()):
        lines.append(f"{str(path):<40} {a:8.2f} {b:8.2f}")
    lines.append(f"{'mean':<40} {float(per_source.mean()):8.2f} {float(improvement.mean()):8.2f}")
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from audiomask.audio import AudioError
    from audiomask.data.manifest import ManifestError
    from audiomask.evaluate import EvaluationError, evaluate
    from audiomask.runtime import apply_threads

    device = resolve_device(args.device)
    apply_threads(args.threads, "batch")
    model = load_model_arg(args.model, device)
    refuse_echo_canceller(model, args.model)
    try:
        evaluate(model, args.data, args.out, compute_pesq_stoi=False if args.no_pesq else "auto",
                 progress=show_progress(args))
    except (ManifestError, AudioError, EvaluationError) as e:
        raise CLIError(str(e)) from None
    return 0
