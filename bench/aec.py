"""Echo cancellers on the same simulated clips: classical baselines next to an audiomask model.

Clips: :class:`audiomask.data.EchoSimulationDataset` scenes of the 25 speakers that
``audiomask train`` holds out for validation (``split_by_speaker(..., 25, seed=0)``; never seen
in training), with the echo paths, levels and noise of ``egs/aec/conf.yaml`` (measured RIRs or
simulated rooms, bulk delay 0–200 ms, loudspeaker non-linearity in half of the clips, echo-path
changes in a fifth, SER −10…10 dB, noise in 80 % at 5–40 dB SNR): ``--clips`` far-end
single-talk clips (scored by ERLE, global, segmental, and over the clip after its first 2 s —
adaptive filters need time to converge), ``--clips`` double-talk clips (scored by the near-end
SI-SDR, its improvement over the microphone signal — mean, median and the count of clips
improved — and, with the ``pesq`` package, PESQ-WB) and ``--clips`` near-end single-talk clips
(the talker and no echo: a canceller must not damage the near-end speech; clips with
background noise — 80 % — are scored by SI-SDRi against the microphone, clips without by the
output's SI-SDR against the clean talker, since the microphone's own is unbounded there). Clips are ``--seconds`` long (default 8 s).

Cancellers (each runs if its package imports, else the JSON says why not):

* ``passthrough`` — the microphone signal itself (ERLE 0 dB by definition);
* ``speex-mdf`` / ``speex-mdf+pp`` — Speex's MDF adaptive filter (``pyaec``, a ready wheel),
  10 ms frames, 4096-tap (256 ms) filter to cover the 200 ms bulk delay; ``+pp`` adds the
  Speex preprocessor (residual echo suppression and denoising). ``pyaec`` never sets the echo
  canceller's sampling rate, so MDF keeps its 8 kHz defaults, among them the input DC notch of
  radius 0.9 — at 16 kHz a high-pass near 250 Hz. Measured on clean speech with a silent far
  end: the output equals that notch applied to the input to 55.7 dB SI-SDR and is −2.5 dB
  SI-SDR from the input itself (the notch with the 16 kHz radius, 0.982: +9.6 dB; run at
  8 kHz with its settings right, the 0.9 notch still gives +3.2 dB). So Speex's SI-SDR rows
  mostly measure this filter; its ``dt_bss_sdr_db`` (which allows a distortion filter) is the
  fairer comparison. A Speex with the rate set needs the system libspeexdsp (``speexdsp``),
  which does not install here;
* ``speexdsp`` — the same MDF through the ``speexdsp`` SWIG binding (needs libspeexdsp);
* ``webrtc-aec3`` — WebRTC's AEC3 through ``pywebrtc-audio`` (a ready wheel) and/or
  ``aec-audio-processing`` (builds WebRTC from source: 15–20 min);
* ``webrtc-legacy+ns`` — the 2016 WebRTC AEC (the full one, low suppression level) with its
  noise suppressor, through ``webrtc-audio-processing`` 0.1.3 (builds from source with
  ``swig``: ``pip install swig webrtc-audio-processing``, about 10 min on 2 cores). It has no
  bulk-delay search of its own beyond its internal estimator; it is given a system delay of 0,
  as AEC3 is — no canceller here is told the scene's delay;
* ``audiomask …`` — each model given with ``--model`` (checkpoints, bundled names or
  NAME:PRESET; default: every bundled echo canceller), offline (identical to its exact stream).

Each canceller's output is aligned for its internal delay before SI-SDR: the lag in
``0 … 1024`` samples that maximises the correlation of its output with the microphone signal
over all double-talk clips (reported as ``delay_samples``). The classical cancellers also
high-pass their input (Speex: a DC notch; WebRTC: a high-pass filter), a phase change at low
frequencies that SI-SDR — a sample-exact comparison — counts as distortion even after the
delay is removed. So the double-talk near-end is also scored by BSS-Eval SDR
(:func:`audiomask.metrics.sdr`, which allows a 512-tap distortion filter): ``dt_bss_sdr_db``.

    python bench/aec.py --json bench/results/aec.json --md bench/results/aec.md   # bundled models + baselines
    python bench/aec.py --model exp/aec-paper/best.safetensors d3net-aec-small
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FRAME = 160  # 10 ms at 16 kHz: the frame every classical canceller here works in
TAIL = 4096  # MDF filter taps: 256 ms, longer than the 200 ms bulk delay
MAX_LAG = 1024

Canceller = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def _framewise(process: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Canceller:
    """Run ``process(mic_frame, far_frame)`` over 10 ms frames (the last one zero-padded)."""
    def run(mic: np.ndarray, far: np.ndarray) -> np.ndarray:
        n = len(mic)
        pad = (-n) % FRAME
        mic_p, far_p = np.pad(mic, (0, pad)), np.pad(far, (0, pad))
        out = [process(mic_p[i : i + FRAME], far_p[i : i + FRAME]) for i in range(0, n + pad, FRAME)]
        return np.concatenate(out)[:n].astype(np.float32)
    return run


def make_pyaec(preprocess: bool, rate: int) -> Callable[[], Canceller]:
    pyaec = importlib.import_module("pyaec")

    def factory() -> Canceller:
        aec = pyaec.Aec(FRAME, TAIL, rate, preprocess)

        def frame(m: np.ndarray, f: np.ndarray) -> np.ndarray:
            out = aec.cancel_echo(_int16(m).tolist(), _int16(f).tolist())
            return np.asarray(out, dtype=np.float32) / 32767.0
        return _framewise(frame)
    return factory


def make_speexdsp(rate: int) -> Callable[[], Canceller]:
    speexdsp = importlib.import_module("speexdsp")

    def factory() -> Canceller:
        ec = speexdsp.EchoCanceller.create(FRAME, TAIL, rate)

        def frame(m: np.ndarray, f: np.ndarray) -> np.ndarray:
            out = ec.process(_int16(m).tobytes(), _int16(f).tobytes())
            return np.frombuffer(out, dtype=np.int16).astype(np.float32) / 32767.0
        return _framewise(frame)
    return factory


def make_pywebrtc(rate: int) -> Callable[[], Canceller]:
    module = importlib.import_module("pywebrtc_audio")

    def factory() -> Canceller:
        ec = module.EchoCanceller(sample_rate=rate, num_channels=1, stream_delay_ms=0)
        return _framewise(lambda m, f: np.asarray(ec.process(m.astype(np.float32), f.astype(np.float32))))
    return factory


def make_aec_audio_processing(rate: int) -> Callable[[], Canceller]:
    module = importlib.import_module("aec_audio_processing")

    def factory() -> Canceller:
        ap = module.AudioProcessor(enable_aec=True, enable_ns=False, enable_agc=False)
        ap.set_stream_format(rate, 1)
        ap.set_reverse_stream_format(rate, 1)

        def frame(m: np.ndarray, f: np.ndarray) -> np.ndarray:
            ap.process_reverse_stream(_int16(f).tobytes())  # far end first, then the microphone
            return np.frombuffer(ap.process_stream(_int16(m).tobytes()), dtype=np.int16) / 32767.0
        return _framewise(frame)
    return factory


def make_webrtc_legacy(rate: int) -> Callable[[], Canceller]:
    module = importlib.import_module("webrtc_audio_processing")

    def factory() -> Canceller:
        ap = module.AudioProcessingModule(aec_type=2, enable_ns=True)  # 2: the full (not mobile) AEC
        ap.set_stream_format(rate, 1)
        ap.set_reverse_stream_format(rate, 1)
        ap.set_system_delay(0)  # no oracle delay: the bulk delay is the scene's to find

        def frame(m: np.ndarray, f: np.ndarray) -> np.ndarray:
            ap.process_reverse_stream(_int16(f).tobytes())  # far end first, then the microphone
            return np.frombuffer(ap.process_stream(_int16(m).tobytes()), dtype=np.int16) / 32767.0
        return _framewise(frame)
    return factory


def make_model(spec: str) -> tuple[Callable[[], Canceller], dict]:
    from audiomask.cli import load_model_arg
    from audiomask.echo_cancellation import cancel_echo, check_aec_model

    model = load_model_arg(spec)
    check_aec_model(model, spec)

    def factory() -> Canceller:
        def run(mic: np.ndarray, far: np.ndarray) -> np.ndarray:
            est = cancel_echo(model, torch.from_numpy(mic), torch.from_numpy(far), 16000)
            return est.numpy()
        return run
    return factory, {"model": spec, "name": model.name, "parameters": model.n_params(),
                     "algorithmic_latency_ms": 1000 * model.encoder.win / model.sample_rate}


def bundled_aec_models() -> list[str]:
    """Names of the bundled models whose task is echo cancellation."""
    from audiomask.models.checkpoint import load_model, pretrained_models

    return [name for name, path in pretrained_models().items() if getattr(load_model(path), "task", None) == "aec"]


def cancellers(rate: int, models: list[str]) -> tuple[dict[str, Callable[[], Canceller]], dict[str, str], dict]:
    """Available cancellers and, for the others, why not."""
    found: dict[str, Callable[[], Canceller]] = {"passthrough": lambda: (lambda m, f: m.copy())}
    missing: dict[str, str] = {}
    candidates = [
        ("speex-mdf", "pyaec", lambda: make_pyaec(False, rate)),
        ("speex-mdf+pp", "pyaec", lambda: make_pyaec(True, rate)),
        ("speexdsp", "speexdsp", lambda: make_speexdsp(rate)),
        ("webrtc-aec3", "pywebrtc-audio", lambda: make_pywebrtc(rate)),
        ("webrtc-aec3 (aec-audio-processing)", "aec-audio-processing", lambda: make_aec_audio_processing(rate)),
        ("webrtc-legacy+ns", "webrtc-audio-processing", lambda: make_webrtc_legacy(rate)),
    ]
    for name, package, make in candidates:
        try:
            found[name] = make()
        except (ImportError, OSError) as e:
            missing[name] = f"not installed: pip install {package} ({type(e).__name__}: {e})"
    info = {}
    for model in models:
        found[f"audiomask {model}"], info[model] = make_model(model)
    return found, missing, info


def clips(n: int, seconds: float, seed: int):
    """``(far-end single talk, double talk, near-end single talk)`` scenes, ``n`` each."""
    from audiomask.data import EchoSimulationDataset, find_audio, split_by_speaker

    _, valid = split_by_speaker(find_audio(DATA / "librispeech-mini"), 25, seed=0)
    common = dict(rir_files=DATA / "rir", simulate_rooms=True, noise_files=DATA / "noise", noise_prob=0.8,
                  snr_db=(5.0, 40.0), ser_db=(-10.0, 10.0), delay_ms=(0.0, 200.0), nonlinear_prob=0.5,
                  path_change_prob=0.2)
    far_single = EchoSimulationDataset(valid, 16000, seconds, length=n, seed=seed, scenario_probs=(0, 1, 0), **common)
    double = EchoSimulationDataset(valid, 16000, seconds, length=n, seed=seed + 1, scenario_probs=(1, 0, 0), **common)
    near_single = EchoSimulationDataset(valid, 16000, seconds, length=n, seed=seed + 2, scenario_probs=(0, 0, 1),
                                        **common)
    return tuple([ds.draw(i) for i in range(n)] for ds in (far_single, double, near_single))


def best_lag(outputs: list[np.ndarray], mics: list[np.ndarray]) -> int:
    """The output delay (samples) that best lines the outputs up with the microphone signals."""
    scores = np.zeros(MAX_LAG + 1)
    for out, mic in zip(outputs, mics):
        n = len(mic)
        spec = np.fft.rfft(out, 2 * n) * np.conj(np.fft.rfft(mic, 2 * n))
        corr = np.fft.irfft(spec, 2 * n)[: MAX_LAG + 1]  # corr[l] = Σ out[t + l] · mic[t]
        scores += corr / (np.linalg.norm(out) * np.linalg.norm(mic) + 1e-12)
    return int(np.argmax(scores))


def shift(x: np.ndarray, lag: int) -> np.ndarray:
    return x[lag:] if lag else x


CONVERGED_S = 2.0  # ERLE is also reported over the clip after its first 2 s


def score(name: str, make: Callable[[], Canceller], far_single, double, near_single, pesq_fn) -> dict:
    from audiomask.metrics import erle, sdr, segmental_erle, si_sdr

    t0, audio_s = time.perf_counter(), 0.0
    outputs = []
    for mic, far, _ in far_single + double + near_single:
        run = make()  # a fresh canceller per clip (no adaptation carried over)
        outputs.append(run(mic.numpy(), far.numpy()))
        audio_s += mic.shape[-1] / 16000
    elapsed = time.perf_counter() - t0
    fe_out = outputs[: len(far_single)]
    dt_out = outputs[len(far_single) : len(far_single) + len(double)]
    ns_out = outputs[len(far_single) + len(double) :]
    lag = best_lag(dt_out, [mic.numpy() for mic, _, _ in double])
    result = {"delay_samples": lag, "rtf": elapsed / audio_s}
    erles, erles_late, seg = [], [], []
    late = int(CONVERGED_S * 16000)
    for out, (mic, _, _) in zip(fe_out, far_single):
        est = torch.from_numpy(np.pad(shift(out, lag), (0, lag)))
        erles.append(erle(mic, est).item())
        erles_late.append(erle(mic[late:], est[late:]).item())
        seg.append(segmental_erle(mic, est).item())
    # near-end single talk: a clip with noise is scored by SI-SDRi over the microphone signal;
    # a clip without (mic == near end, whose own SI-SDR is unbounded) by the output's SI-SDR
    ns_sisdri, ns_clean = [], []
    for out, (mic, _, targets) in zip(ns_out, near_single):
        n = mic.shape[-1] - lag
        est, near = torch.from_numpy(shift(out, lag)[:n].copy()), targets[0][:n]
        if torch.equal(mic[:n], near):
            ns_clean.append(si_sdr(est, near).item())
        else:
            ns_sisdri.append(si_sdr(est, near).item() - si_sdr(mic[:n], near).item())
    sisdr, sisdri, bss, pesqs = [], [], [], []
    for out, (mic, _, targets) in zip(dt_out, double):
        n = mic.shape[-1] - lag
        est, near = torch.from_numpy(shift(out, lag)[:n].copy()), targets[0][:n]
        sisdr.append(si_sdr(est, near).item())
        sisdri.append(sisdr[-1] - si_sdr(mic[:n], near).item())
        bss.append(sdr(est.double(), near.double()).item())
        if pesq_fn is not None:
            try:
                pesqs.append(float(pesq_fn(16000, near.numpy(), est.numpy(), "wb")))
            except Exception:  # pesq refuses silent or too short signals
                pass
    result.update(erle_db=float(np.mean(erles)), erle_median_db=float(np.median(erles)),
                  erle_after_2s_db=float(np.mean(erles_late)), segmental_erle_db=float(np.mean(seg)),
                  dt_si_sdr_db=float(np.mean(sisdr)), dt_si_sdri_db=float(np.mean(sisdri)),
                  dt_si_sdri_median_db=float(np.median(sisdri)),
                  dt_improved=int(sum(v > 0 for v in sisdri)), dt_clips=len(sisdri),
                  dt_bss_sdr_db=float(np.mean(bss)),
                  ns_si_sdri_db=float(np.mean(ns_sisdri)), ns_si_sdri_median_db=float(np.median(ns_sisdri)),
                  ns_noisy_clips=len(ns_sisdri), ns_clean_clips=len(ns_clean),
                  ns_clean_si_sdr_db=float(np.mean(ns_clean)) if ns_clean else float("nan"),
                  ns_clean_si_sdr_min_db=float(np.min(ns_clean)) if ns_clean else float("nan"),
                  erle_db_per_clip=[round(v, 3) for v in erles], dt_si_sdr_db_per_clip=[round(v, 3) for v in sisdr],
                  dt_si_sdri_db_per_clip=[round(v, 3) for v in sisdri],
                  ns_si_sdri_db_per_clip=[round(v, 3) for v in ns_sisdri],
                  ns_clean_si_sdr_db_per_clip=[round(v, 3) for v in ns_clean])
    if pesqs:
        result["dt_pesq_wb"] = float(np.mean(pesqs))
    print(f"{name:<36} ERLE {result['erle_db']:6.2f} dB (after 2 s {result['erle_after_2s_db']:6.2f})  "
          f"DT SI-SDRi {result['dt_si_sdri_db']:6.2f} dB ({result['dt_improved']}/{result['dt_clips']} improved)  "
          f"NST SI-SDRi {result['ns_si_sdri_db']:6.2f} dB, clean SI-SDR {result['ns_clean_si_sdr_db']:6.2f} dB"
          + (f"  PESQ-WB {result['dt_pesq_wb']:.2f}" if pesqs else "")
          + f"  delay {lag}  RTF {result['rtf']:.3f}", flush=True)
    return result


def table(results: dict[str, dict]) -> str:
    """One markdown table: a row per canceller."""
    head = ("| canceller | ERLE FST mean / median (dB) | ERLE after 2 s | DT SI-SDRi mean / median (dB) | "
            "DT improved | DT PESQ-WB | DT BSS SDR (dB) | NST noisy: SI-SDRi mean / median (dB) | "
            "NST clean: SI-SDR mean / min (dB) | RTF |")
    rows = [head, "|" + "---|" * 10]
    for name, r in results.items():
        pesq = f"{r['dt_pesq_wb']:.2f}" if "dt_pesq_wb" in r else "—"
        rows.append(f"| {name} | {r['erle_db']:.2f} / {r['erle_median_db']:.2f} | {r['erle_after_2s_db']:.2f} | "
                    f"{r['dt_si_sdri_db']:.2f} / {r['dt_si_sdri_median_db']:.2f} | {r['dt_improved']} / {r['dt_clips']} | "
                    f"{pesq} | {r['dt_bss_sdr_db']:.2f} | {r['ns_si_sdri_db']:.2f} / {r['ns_si_sdri_median_db']:.2f} | "
                    f"{r['ns_clean_si_sdr_db']:.2f} / {r['ns_clean_si_sdr_min_db']:.2f} | "
                    f"{r['rtf']:.3f} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs="*", default=None,
                   help="audiomask AEC models: checkpoints, bundled names or NAME:PRESET "
                        "(default: every bundled echo canceller; --model with no value: baselines only)")
    p.add_argument("--clips", type=int, default=40, help="clips per scenario (default 40)")
    p.add_argument("--seconds", type=float, default=8.0, help="clip length (default 8 s)")
    p.add_argument("--seed", type=int, default=20_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the results here (e.g. bench/results/aec.json)")
    p.add_argument("--md", help="write the table here as markdown (e.g. bench/results/aec.md)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = bundled_aec_models() if args.model is None else args.model
    found, missing, model_info = cancellers(16000, models)
    try:
        pesq_fn = importlib.import_module("pesq").pesq
        pesq_note = "PESQ-WB of the double-talk near-end estimate"
    except ImportError:
        pesq_fn, pesq_note = None, "PESQ skipped: pip install 'audiomask[metrics]'"
    for name, why in missing.items():
        print(f"{name:<36} {why}")
    if not models:
        print("no model: baselines only")
    print(pesq_note)
    far_single, double, near_single = clips(args.clips, args.seconds, args.seed)
    results = {name: score(name, make, far_single, double, near_single, pesq_fn) for name, make in found.items()}
    print(table(results))
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "python": sys.version.split()[0],
                    "torch": torch.__version__, "threads": args.threads},
        "clips": {"per_scenario": args.clips, "seconds": args.seconds, "seed": args.seed,
                  "speakers": "25 held-out (split_by_speaker seed 0)", "sample_rate": 16000},
        "model": model_info, "results": results, "not_run": missing, "pesq": pesq_note,
    }
    if args.json:
        from audiomask.fileio import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(report, indent=2))
        print(args.json)
    if args.md:
        from audiomask.fileio import atomic_write_text

        atomic_write_text(Path(args.md), f"# bench/aec.py, {time.strftime('%Y-%m-%d')}\n\n"
                          f"{args.clips} clips per scenario, {args.seconds:g} s, seed {args.seed}, 25 held-out "
                          f"speakers; {platform.processor() or platform.machine()}, torch {torch.__version__}, "
                          f"{args.threads} threads. FST: far-end single talk, DT: double talk, NST: near-end "
                          f"single talk.\n\n" + table(results))
        print(args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
