"""The ``audiomask`` command: ``audiomask <command> --help`` documents each command."""

from __future__ import annotations

import argparse
import difflib
import json
import math
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from audiomask.audio import AudioError

DEFAULT_MODEL = "convtasnet-mini2mix"
DEFAULT_CAUSAL_MODEL = "convtasnet-mini2mix-causal"
DEFAULT_AEC_MODEL = "d3net-aec-small"  # the bundled echo canceller


class CLIError(Exception):
    """A one-line user error; printed as ``audiomask: error: <message>``, exit code 2."""


def load_model_arg(spec: str, device: str = "cpu") -> torch.nn.Module:
    """``--model`` value → model: a checkpoint path (audiomask's, or a released file of another
    toolkit as published), a bundled model name, ``hf:OWNER/REPO`` of a known release, or
    ``NAME[:PRESET]`` from the registry (random weights — for tests and benchmarks)."""
    return load_model_arg_with_provenance(spec, device)[0]


def load_model_arg_with_provenance(spec: str, device: str = "cpu") -> tuple[torch.nn.Module, dict[str, str]]:
    """:func:`load_model_arg` and where the weights came from (empty for random weights)."""
    from audiomask.loading import HUB_PREFIX, load_with_provenance
    from audiomask.models.checkpoint import CheckpointError, pretrained_models
    from audiomask.models.registry import build, list_models

    check_device(device)
    path = Path(spec)
    if path.exists() or spec in pretrained_models() or spec.startswith(HUB_PREFIX):
        try:
            return load_with_provenance(spec, device=device)
        except CheckpointError as e:
            raise CLIError(str(e)) from None
    name, _, preset = spec.partition(":")
    if name in list_models():
        try:
            model = build(name, preset or None)
        except ValueError as e:
            raise CLIError(str(e)) from None
        print(f"audiomask: warning: {spec} has random weights (no checkpoint given)", file=sys.stderr)
        return model.to(device).eval(), {}
    if path.suffix or "/" in spec:
        raise CLIError(f"{spec}: checkpoint not found")
    known = sorted(pretrained_models()) + sorted(list_models())
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise CLIError(f"{spec}: unknown model; {hint}give a checkpoint path or one of: {', '.join(known)}")


def refuse_echo_canceller(model: torch.nn.Module, spec: str) -> None:
    """Separation commands take one mixture; an echo canceller needs the far-end signal too."""
    if getattr(model, "task", "separation") == "aec":
        raise CLIError(f"{spec} is an echo canceller (it needs the far-end signal too): "
                       "use `audiomask aec --mic MIC --far FAR --out OUT`")


def check_device(device: str) -> None:
    """Refuse a device this machine does not have, with the reason, before loading anything."""
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise CLIError(f"--device {device}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {device}: CUDA is not available (this torch build: {torch.__version__})")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CLIError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when this machine has it, else ``cpu``; other names are checked
    (:func:`check_device`) and kept."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    check_device(device)
    return device


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def error_line(problem: object) -> str:
    """The one line printed for a failed input, with the library's option names in the CLI's spelling."""
    from audiomask.audio import DOWNMIX_HINT

    return f"audiomask: error: {str(problem).replace(DOWNMIX_HINT, 'use --downmix')}"


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars go to stderr, only when it is a terminal and ``--quiet`` is not given."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


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
        print(f"audiomask: {line}", file=sys.stderr)
    device = resolve_device(args.device)
    apply_threads(args.threads, "batch")
    model = load_model_arg(args.model, device)
    refuse_echo_canceller(model, args.model)
    if args.ref and len(args.ref) != model.n_src:
        raise CLIError(f"--ref: the model separates {model.n_src} sources, got {len(args.ref)} references")
    plans, plan_errors = plan_separation(inputs, args.out, model.n_src, args.overwrite,
                                         extras=["_spectrogram.png"] if args.spectrogram else [])
    errors += plan_errors
    for message in errors:
        print(error_line(message), file=sys.stderr)
    failed = len(errors)
    results = separate_planned(model, plans, OUTPUT_FORMATS[args.format], args.downmix, args.chunk,
                               progress=show_progress(args))
    for plan, result in zip(plans, results):
        if isinstance(result, AudioError):
            print(error_line(result), file=sys.stderr)
            failed += 1
            continue
        if result.peak_scale < 1.0:
            print(f"audiomask: warning: {result.input}: the estimates would peak above full scale; all of "
                  f"its outputs were scaled down by {-20 * math.log10(result.peak_scale):.1f} dB so none clips",
                  file=sys.stderr)
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


def cmd_train(args: argparse.Namespace) -> int:
    from audiomask.models.checkpoint import CheckpointError
    from audiomask.training import TrainingError, load_config, train

    try:
        cfg = load_config(args.config, args.overrides)
    except ValueError as e:
        raise CLIError(str(e)) from None
    try:
        summary = train(cfg, progress=not args.quiet)
    except (TrainingError, CheckpointError) as e:  # the run's device, files or numbers
        print(f"audiomask: error: {e}", file=sys.stderr)
        return 1
    if summary["interrupted"]:
        return 128 + summary["interrupted"]  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    if summary["already_done"]:
        how = (f"stopped early at step {summary['steps']} (run.early_stop={cfg.run.early_stop} validations "
               "without improvement): raise run.early_stop or set it to 0" if summary["early_stopped"] else
               f"trained to step {summary['steps']} (optim.steps): raise optim.steps")
        print(f"{cfg.run.out_dir}: already {how} to train further")
        return 0
    if summary.get("best_si_sdri", float("-inf")) > float("-inf"):
        print(f"best validation SI-SDRi {summary['best_si_sdri']:.2f} dB; "
              f"{summary['steps_per_s']:.2f} steps/s, {summary['samples_per_s']:.2f} samples/s; "
              f"model: {cfg.run.out_dir}/best.safetensors")
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    from audiomask.audio import read_audio, resample, write_audio
    from audiomask.runtime import choose_threads
    from audiomask.separation import output_paths
    from audiomask.streaming import simulate
    from audiomask.streaming.blocks import block_samples, check_block_ms

    try:
        check_block_ms(args.block_ms)  # before any work
    except ValueError as e:
        raise CLIError(str(e)) from None
    if not args.mic and not args.input:
        raise CLIError("give --input FILE (simulated real time) or --mic")
    model = load_model_arg(args.model, "cpu")
    refuse_echo_canceller(model, args.model)
    if not model.causal:
        raise CLIError(f"{args.model}: not a causal model; real-time streaming needs one "
                       "(audiomask separate --chunk always runs any model window by window)")
    try:
        block = block_samples(args.block_ms, model.sample_rate)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.mic:
        return _stream_microphone(model, block, args)
    wav, rate = read_audio(args.input, channels=1, downmix=args.downmix)
    if rate != model.sample_rate:
        print(f"{args.input}: {rate} Hz, resampled to the model's {model.sample_rate} Hz for streaming "
              f"and the sources back to {rate} Hz", file=sys.stderr)
    threads = choose_threads(args.threads, "stream", block_ms=args.block_ms)
    est, report = simulate(model, resample(wav[0], rate, model.sample_rate), block, threads=threads,
                           progress=not args.quiet)
    est = resample(est, model.sample_rate, rate)[..., : wav.shape[-1]]
    for target, source in zip(output_paths(args.input, args.out, model.n_src), est):
        write_audio(target, source, rate)
        print(target)
    print(report)
    return 0


def _stream_microphone(model: torch.nn.Module, block: int, args: argparse.Namespace) -> int:
    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:
        raise CLIError(f"--mic needs sounddevice and PortAudio (pip install 'audiomask[stream]'; "
                       f"apt-get install libportaudio2): {e}") from None
    from audiomask.runtime import choose_threads
    from audiomask.streaming import Stream

    print(f"streaming the default microphone through {args.model} for {args.seconds:g} s "
          "(source 1 to the left channel, source 2 to the right); Ctrl-C stops", file=sys.stderr)
    # a live stream goes on through a NaN from the device: those samples are zeroed and counted
    with Stream(model, block, threads=choose_threads(args.threads, "stream", block_ms=args.block_ms),
                nonfinite="zero") as stream, \
            sd.Stream(samplerate=model.sample_rate, blocksize=block, channels=(1, model.n_src),
                      dtype="float32", callback=stream.callback):
        try:
            time.sleep(args.seconds)
        except KeyboardInterrupt:
            pass
    print(stream.report())
    return 0


def cmd_aec(args: argparse.Namespace) -> int:
    from audiomask.echo_cancellation import cancel_echo_files, check_aec_model, output_files
    from audiomask.models.checkpoint import pretrained_models
    from audiomask.outputs import OUTPUT_FORMATS, check_output_file
    from audiomask.runtime import apply_threads

    from audiomask.streaming.blocks import check_block_ms

    try:
        check_block_ms(args.block_ms)  # the same bounds as `stream`, before any work
    except ValueError as e:
        raise CLIError(str(e)) from None
    subtype = OUTPUT_FORMATS[args.format]
    targets = output_files(args.mic, args.out, args.all)
    for target in targets:  # before loading or computing anything
        check_output_file(target, [args.mic, args.far], subtype, args.overwrite)
    if args.stream:
        if args.device not in ("auto", "cpu"):
            raise CLIError("--stream runs on the CPU (block by block, as a sound card feeds it); drop --device")
        device = "cpu"
        apply_threads(args.threads, "stream", block_ms=args.block_ms)
    else:
        device = resolve_device(args.device)
        apply_threads(args.threads, "batch")
    spec = args.model
    if spec is None:
        if DEFAULT_AEC_MODEL not in pretrained_models():
            raise CLIError("no trained echo canceller is bundled: give --model CHECKPOINT (train one with "
                           "`audiomask train egs/aec/conf.yaml`), or --model d3net-aec:small for random weights")
        spec = DEFAULT_AEC_MODEL
    model = load_model_arg(spec, device)
    try:
        check_aec_model(model, spec)
    except ValueError as e:
        raise CLIError(str(e)) from None
    paths, report, peak_scale = cancel_echo_files(
        model, args.mic, args.far, targets, stream_block_ms=args.block_ms if args.stream else None,
        downmix=args.downmix, subtype=subtype)
    if peak_scale < 1.0:
        print(f"audiomask: warning: {args.mic}: the outputs would peak above full scale; they were scaled "
              f"down by {-20 * math.log10(peak_scale):.1f} dB so none clips", file=sys.stderr)
    if not args.quiet:
        print("\n".join(map(str, paths)))
        if report is not None:
            print(report)
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


def add_compute_arguments(p: argparse.ArgumentParser, device_note: str = "", threads_note: str = "") -> None:
    """``--device`` (default auto) and ``--threads`` for a command that runs a model."""
    note = f"; {device_note}" if device_note else ""
    p.add_argument("--device", default="auto",
                   help=f"torch device: auto (cuda when available, else cpu), cpu, cuda, cuda:1, … (default: auto{note})")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads (default: OMP_NUM_THREADS when set, else every core that is idle"
                        f"{'; ' + threads_note if threads_note else ''})")


def build_parser() -> argparse.ArgumentParser:
    from audiomask.outputs import DEFAULT_FORMAT, OUTPUT_FORMATS

    parser = argparse.ArgumentParser(
        prog="audiomask", description="Speech separation with encoder → masker → decoder models.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("separate", help="separate audio files into one file per source",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Separate each input into one file per source, written as <stem>_s1.wav, "
                                   "<stem>_s2.wav, … in --out\n(default: beside the input), at the input's "
                                   "sample rate (inputs at other rates are resampled to\nthe model's and back).\n\n"
                                   "Outputs never overwrite an input, another output of the same call or (without "
                                   "--overwrite)\nan existing file; inputs whose names collide in one folder "
                                   "(a/mix.wav, b/mix.wav) are written as\na_mix_s1.wav, b_mix_s1.wav. All output "
                                   "paths are checked before the first separation; an input\nthat fails gets one "
                                   "error line and the others are still separated (exit code 1).\n\n"
                                   "Level: each estimate is scaled by its least-squares gain onto the mixture, "
                                   "so a source comes\nout at the level at which it is in the mixture; if one "
                                   "would then peak above full scale, all\noutputs of that input are scaled down "
                                   "together (with a warning), so nothing clips.",
                       epilog="examples:\n"
                              "  audiomask separate mix.wav                  # writes mix_s1.wav, mix_s2.wav beside it\n"
                              "  audiomask separate recordings/ --out sep/   # every audio file in the folder\n"
                              "  audiomask separate a.wav --format pcm16 --threads 1")
    p.add_argument("inputs", nargs="+", metavar="IN",
                   help="audio files (wav, flac, ogg, aiff, …) or folders (their audio files, sorted)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="checkpoint file (audiomask's or a published release), bundled model name, "
                        f"hf:OWNER/REPO, or NAME[:PRESET] with random weights (default: {DEFAULT_MODEL})")
    p.add_argument("--out", help="output folder (created if missing; default: beside each input)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never an input)")
    p.add_argument("--format", choices=sorted(OUTPUT_FORMATS), default=DEFAULT_FORMAT,
                   help=f"WAV sample format of every output (default: {DEFAULT_FORMAT})")
    add_compute_arguments(p)
    p.add_argument("--downmix", action="store_true", help="average multi-channel inputs to mono "
                   "(otherwise they are refused)")
    p.add_argument("--chunk", choices=["auto", "always", "never"], default="auto",
                   help="separate in overlapping 10 s windows (bounded memory, speakers aligned across "
                        "windows): auto = for inputs over 30 s (default), always, or never")
    p.add_argument("--ref", nargs="+", metavar="REF",
                   help="reference sources of the (single) input: print SI-SDR and SI-SDRi per source, "
                        "scored as `audiomask evaluate` scores (at the model's sample rate, best permutation)")
    p.add_argument("--spectrogram", action="store_true",
                   help="also write <stem>_spectrogram.png of the mixture and estimates beside the "
                        "outputs (needs matplotlib)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or list of written files")
    p.set_defaults(func=cmd_separate)

    p = sub.add_parser("info", help="describe a model: config, parameters, sample rate, provenance",
                       description="Print a model's configuration, parameter count, sample rate, "
                                   "number of sources, causality and receptive field, and the metadata "
                                   "stored with it (provenance of converted releases; training data, steps "
                                   "and validation SI-SDRi of bundled models).")
    p.add_argument("model", metavar="MODEL",
                   help="checkpoint file or release folder, bundled model name, hf:OWNER/REPO or NAME[:PRESET]")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("convert", help="write a released checkpoint of another toolkit as an audiomask file",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Read a released checkpoint as published (Asteroid package, ClearerVoice "
                                   "MossFormer2, ModelScope\nMossFormer folder, look2hear TIGER with its "
                                   "config.json, naplab Conv-TasNet; see `audiomask list\n--published`) and write "
                                   "one native .safetensors file: weights, config, sample rate and\nprovenance "
                                   "(source format, origin, licence where the release states one).",
                       epilog="examples:\n"
                              "  audiomask convert MossFormer2_SS_16K/ --out mossformer2-16k.safetensors\n"
                              "  audiomask convert pytorch_model.bin --out convtasnet-libri2mix.safetensors\n"
                              "  audiomask convert hf:JusperLee/TIGER-speech --out tiger.safetensors")
    p.add_argument("source", metavar="SRC", help="released file or folder, or hf:OWNER/REPO")
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("evaluate", help="score a model on mixtures with reference sources (SI-SDRi, SDRi, …)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Separate every mixture of a test set and score the estimates against the "
                                   "references,\nat the model's sample rate (the data are resampled to it).\n\n"
                                   "Per mixture (PIT on SI-SDR, means over sources): SI-SDR, SI-SDRi, SDR "
                                   "(BSS-Eval v4), SDRi\n(improvements over the unprocessed mixture), and PESQ "
                                   "and STOI when the pesq and pystoi\npackages are installed "
                                   "(pip install 'audiomask[metrics]').\n\n"
                                   "Writes OUT/per_utterance.csv and OUT/si_sdri_hist.png (needs the plot extra) "
                                   "and prints\nthe mean, median and 95% confidence interval "
                                   "(Student t) of each metric.",
                       epilog="data layouts:\n"
                              "  folder     DATA/mix/NAME.wav with DATA/s1/NAME.wav, DATA/s2/NAME.wav, … "
                              "(same file names)\n"
                              "  CSV        header mix,s1,s2[,s3…][,noise] and optional id; paths relative "
                              "to the\n             manifest's folder or absolute\n"
                              "  JSON       a list of objects with the same keys\n\n"
                              "example:\n  audiomask evaluate --model model.safetensors --data test/ --out eval/")
    p.add_argument("--model", required=True,
                   help="checkpoint file, bundled model name, or NAME[:PRESET] with random weights")
    p.add_argument("--data", required=True, metavar="MANIFEST_OR_DIR",
                   help="manifest (.csv or .json) or folder with mix/, s1/, s2/, …")
    p.add_argument("--out", required=True, help="output directory (created if missing; checked before any work)")
    add_compute_arguments(p)
    p.add_argument("--no-pesq", action="store_true",
                   help="skip PESQ and STOI even when pesq and pystoi are installed (they are slow)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar (the summary is still printed)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("train", help="train a model from a YAML config (resumes an interrupted run)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train from a YAML config with sections model, data, optim and run "
                                   "(see egs/mini2mix/conf.yaml). Ctrl-C (or SIGTERM) saves a checkpoint "
                                   "after the current step and exits; run the same command again and it "
                                   "continues bit-exactly from the last checkpoint in run.out_dir (a damaged "
                                   "one is detected by its checksum and the one before is used). "
                                   "For several GPUs or nodes launch it with torchrun.",
                       epilog="examples:\n"
                              "  audiomask train egs/mini2mix/conf.yaml\n"
                              "  audiomask train egs/mini2mix/conf.yaml optim.lr=5e-4 run.out_dir=exp/lr5e-4\n"
                              "  torchrun --nproc_per_node 4 -m audiomask train conf.yaml run.amp=bf16")
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE",
                   help="override config values, e.g. optim.lr=3e-4 model.overrides.n_src=3")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("stream", help="real-time separation with a causal model (file simulation or microphone)",
                       description="Run a causal model block by block as a sound card would and report "
                                   "the algorithmic latency, processing time per block (mean, p99) and "
                                   "deadline misses. With --input the file is fed in blocks of --block-ms "
                                   "(simulated real time) and the sources are written to --out; a file at "
                                   "another rate than the model's is resampled to it first and the sources "
                                   "back to the file's rate.")
    p.add_argument("--input", help="audio file to stream (simulated real time)")
    p.add_argument("--mic", action="store_true", help="stream the default microphone to the speakers "
                   "(needs the 'stream' extra and PortAudio)")
    p.add_argument("--model", default=DEFAULT_CAUSAL_MODEL,
                   help=f"causal checkpoint, bundled model or NAME:PRESET (default: {DEFAULT_CAUSAL_MODEL})")
    p.add_argument("--block-ms", type=float, default=10.0,
                   help="block length in ms, at least one sample and at most 10000 (default: 10)")
    p.add_argument("--out", default="streamed", help="output directory for --input (default: streamed)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads for the model (default: 1 for blocks up to 40 ms, else the idle cores)")
    p.add_argument("--seconds", type=float, default=30.0, help="--mic duration (default: 30)")
    p.add_argument("--downmix", action="store_true", help="average a multi-channel input to mono")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar for --input")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("aec", help="acoustic echo cancellation (and noise suppression) of a recording",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Remove the far-end echo (and background noise) from a microphone recording, "
                                   "given the far-end\n(loudspeaker) reference signal, with an AEC model such as "
                                   "d3net-aec. The two files must\nhave the same sample rate and length; the output "
                                   "(near-end speech) is written at that rate.",
                       epilog="examples:\n"
                              "  audiomask aec --mic mic.wav --far far.wav --out near.wav --model exp/aec-small/best.safetensors\n"
                              "  audiomask aec --mic mic.wav --far far.wav --out near.wav --model M --stream --block-ms 10")
    p.add_argument("--mic", required=True, help="microphone recording (near-end speech + echo + noise)")
    p.add_argument("--far", required=True, help="far-end reference: the signal sent to the loudspeaker")
    p.add_argument("--out", help="output file for the near-end speech estimate (default: MIC_near.wav beside "
                                 "--mic); checked before any work")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never an input)")
    p.add_argument("--format", choices=sorted(OUTPUT_FORMATS), default=DEFAULT_FORMAT,
                   help=f"sample format of the outputs (default: {DEFAULT_FORMAT}; FLAC needs pcm16 or pcm24)")
    p.add_argument("--model", default=None,
                   help=f"AEC checkpoint, bundled model or NAME:PRESET with random weights "
                        f"(default: the bundled {DEFAULT_AEC_MODEL})")
    p.add_argument("--stream", action="store_true",
                   help="run block by block through the exact stateful stream and print latency and timing")
    p.add_argument("--block-ms", type=float, default=10.0, help="block length for --stream in ms (default: 10)")
    p.add_argument("--all", action="store_true",
                   help="also write the echo and noise estimates as OUT_echo.wav and OUT_noise.wav")
    add_compute_arguments(p, "the offline run; --stream always runs on the CPU",
                          "1 for --stream blocks up to 40 ms")
    p.add_argument("--downmix", action="store_true", help="average multi-channel inputs to mono")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=cmd_aec)

    p = sub.add_parser("list", help="list architectures, presets, bundled and published models",
                       description="List the registered architectures with their presets, the trained "
                                   "models bundled with the package, or (--published) the released "
                                   "checkpoints of other toolkits that load as they are.")
    p.add_argument("--published", action="store_true",
                   help="list known releases: hub id, files, format, sample rate, task, licence, paper result")
    p.set_defaults(func=cmd_list)

    from audiomask.recipes.cli import add_prepare_parser  # corpus list and layouts live with the preparers

    add_prepare_parser(sub)  # audiomask prepare DATASET ROOT --out DATA

    from audiomask.export.cli import add_export_parser  # audiomask export MODEL --out FILE
    from audiomask.serve.cli import add_serve_parser  # audiomask serve MODEL --port N

    add_export_parser(sub)
    add_serve_parser(sub)
    return parser


def _version() -> str:
    from audiomask import __version__

    return f"audiomask {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from audiomask.runtime import tune_allocator

    tune_allocator()  # long inputs: keep freed activations in the heap (AUDIOMASK_TUNE_MALLOC=0: off)
    try:
        return args.func(args)
    except CLIError as e:
        print(f"audiomask: error: {e}", file=sys.stderr)
        return 2
    except AudioError as e:
        print(error_line(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("audiomask: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
