"""The ``audiomask`` argument parser: one subparser per command, each bound to its ``cmd_*``."""

from __future__ import annotations

import argparse

from audiomask.cli.common import (
    DEFAULT_AEC_MODEL,
    DEFAULT_CAUSAL_MODEL,
    DEFAULT_MODEL,
    add_compute_arguments,
    positive_int,
)
from audiomask.cli.models import cmd_convert, cmd_info, cmd_list
from audiomask.cli.separate import cmd_evaluate, cmd_separate
from audiomask.cli.stream import cmd_aec, cmd_stream
from audiomask.cli.train import cmd_train


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
    p.add_argument("--shifts", type=int, default=1, metavar="N",
                   help="average the estimates of N copies of the input shifted within one encoder hop "
                        "(N times the compute; default 1: off)")
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

    from audiomask.cli.prepare import (
        add_prepare_parser,  # corpus list and layouts live with the preparers
    )

    add_prepare_parser(sub)  # audiomask prepare DATASET ROOT --out DATA

    from audiomask.cli.export import (
        add_export_parser,  # audiomask export MODEL --out FILE
    )
    from audiomask.cli.serve import add_serve_parser  # audiomask serve MODEL --port N

    add_export_parser(sub)
    add_serve_parser(sub)
    return parser


def _version() -> str:
    from audiomask import __version__

    return f"audiomask {__version__}"
