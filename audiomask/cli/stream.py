"""``audiomask stream`` (live separation) and ``audiomask aec`` (echo cancellation)."""

from __future__ import annotations

import argparse
import logging
import math
import time

import torch

from audiomask.cli.common import (
    DEFAULT_AEC_MODEL,
    PLAIN,
    CLIError,
    load_model_arg,
    refuse_echo_canceller,
    resolve_device,
)

_log = logging.getLogger(__name__)


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
        _log.info("%s: %d Hz, resampled to the model's %d Hz for streaming and the sources back to %d Hz",
                  args.input, rate, model.sample_rate, rate, extra=PLAIN)
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

    _log.info("streaming the default microphone through %s for %g s (source 1 to the left channel, "
              "source 2 to the right); Ctrl-C stops", args.model, args.seconds, extra=PLAIN)
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
    from audiomask.echo_cancellation import (
        cancel_echo_files,
        check_aec_model,
        output_files,
    )
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
        _log.warning("%s: the outputs would peak above full scale; they were scaled down by %.1f dB so none "
                     "clips", args.mic, -20 * math.log10(peak_scale))
    if not args.quiet:
        print("\n".join(map(str, paths)))
        if report is not None:
            print(report)
    return 0
