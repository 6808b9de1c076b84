"""Known released checkpoints of audiomask's architectures, published by their authors and by
peer toolkits: where to get them, what they are for, and what the papers report.

Each :class:`Release` names its hub repository (``hf:OWNER/REPO`` loads it, see
:mod:`audiomask.hub`) or the page to download it from by hand, the files of its layout (read
by :mod:`audiomask.interop.formats`), and the licence its model card states (recorded when
the entry was written: the card is authoritative; a licence stored in the file itself, like
Asteroid's ``license_note``, is what ``audiomask info`` shows for that file).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Release:
    """One published checkpoint.

    Attributes:
        name: short name used by ``audiomask list --published``.
        hub_id: Hugging Face repository (``None`` when the release is elsewhere).
        page: where to download it by hand.
        files: the files of the release that are read, the first one being the weights.
        format: :data:`audiomask.interop.CONVERTERS` key of its layout.
        sample_rate: Hz.
        task: what it separates.
        license: as stated by the release.
        paper_result: the published quality (with its source), or ``""`` when none is quoted here.
    """

    name: str
    hub_id: str | None
    page: str
    files: tuple[str, ...]
    format: str
    sample_rate: int
    task: str
    license: str
    paper_result: str = ""


RELEASES: tuple[Release, ...] = (
    Release("mossformer2-ss-16k", "alibabasglab/MossFormer2_SS_16K",
            "https://huggingface.co/alibabasglab/MossFormer2_SS_16K",
            ("last_best_checkpoint.pt", "last_best_checkpoint"), "clearervoice-mossformer2", 16000,
            "2-speaker separation (ClearerVoice-Studio)", "Apache-2.0",
            "MossFormer2 paper: 24.1 dB SI-SDRi on WSJ0-2mix (8 kHz model)"),
    Release("mossformer2-ss-8k", "alibabasglab/MossFormer2_SS_8K",
            "https://huggingface.co/alibabasglab/MossFormer2_SS_8K",
            ("last_best_checkpoint.pt", "last_best_checkpoint"), "clearervoice-mossformer2", 8000,
            "2-speaker separation (ClearerVoice-Studio)", "Apache-2.0",
            "MossFormer2 paper: 24.1 dB SI-SDRi on WSJ0-2mix"),
    Release("mossformer-8k", None,
            "https://modelscope.cn/models/damo/speech_mossformer_separation_temporal_8k",
            ("encoder.bin", "decoder.bin", "masknet.bin", "configuration.json"), "modelscope-mossformer", 8000,
            "2-speaker separation (ModelScope)", "Apache-2.0",
            "MossFormer paper: 22.8 dB SI-SDRi on WSJ0-2mix"),
    Release("tiger-speech", "JusperLee/TIGER-speech", "https://huggingface.co/JusperLee/TIGER-speech",
            ("model.safetensors", "config.json"), "look2hear-tiger", 16000,
            "2-speaker separation in noisy reverberant rooms (EchoSet)", "Apache-2.0"),
    Release("convtasnet-libri2mix-sepclean-8k", "JorisCos/ConvTasNet_Libri2Mix_sepclean_8k",
            "https://huggingface.co/JorisCos/ConvTasNet_Libri2Mix_sepclean_8k",
            ("pytorch_model.bin",), "asteroid-convtasnet", 8000, "2-speaker separation, clean (Asteroid)",
            "CC BY-SA 3.0 (stated in the file's license_note)",
            "Conv-TasNet paper: 15.3 dB SI-SDRi on WSJ0-2mix"),
    Release("convtasnet-libri2mix-sepclean-16k", "JorisCos/ConvTasNet_Libri2Mix_sepclean_16k",
            "https://huggingface.co/JorisCos/ConvTasNet_Libri2Mix_sepclean_16k",
            ("pytorch_model.bin",), "asteroid-convtasnet", 16000, "2-speaker separation, clean (Asteroid)",
            "CC BY-SA 3.0 (stated in the file's license_note)"),
    Release("convtasnet-libri2mix-sepnoisy-16k", "JorisCos/ConvTasNet_Libri2Mix_sepnoisy_16k",
            "https://huggingface.co/JorisCos/ConvTasNet_Libri2Mix_sepnoisy_16k",
            ("pytorch_model.bin",), "asteroid-convtasnet", 16000, "2-speaker separation with noise (Asteroid)",
            "CC BY-SA 3.0 (stated in the file's license_note)"),
)


def find_release(name_or_hub_id: str) -> Release | None:
    """The release called ``name_or_hub_id`` or hosted at that hub repository (case-insensitive)."""
    key = name_or_hub_id.lower()
    for release in RELEASES:
        if key in (release.name.lower(), (release.hub_id or "").lower()):
            return release
    return None
