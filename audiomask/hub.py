"""``hf:OWNER/REPO``: a known release (:mod:`audiomask.published`) fetched from the Hugging Face
hub through ``huggingface_hub`` (the ``hub`` extra), converted once, and kept in the cache.

Nothing is downloaded unless a ``hf:`` model is asked for. huggingface_hub's own cache and
settings apply (``HF_HOME``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE=1``: cached files only). The
converted checkpoint is written next to the hub cache, at
``<HF_HUB_CACHE>/audiomask/<OWNER>--<REPO>/<commit>.safetensors``, so the next load reads it
directly; a new commit of the repository is converted again.
"""

from __future__ import annotations

from pathlib import Path

from audiomask.models.checkpoint import CheckpointError, save_model
from audiomask.published import RELEASES, find_release

INSTALL_HINT = "pip install 'audiomask[hub]'"


def fetch(repo_id: str) -> Path:
    """The converted audiomask checkpoint of the release at hub repository ``repo_id``
    (downloading and converting it on first use)."""
    spec = f"hf:{repo_id}"
    release = find_release(repo_id)
    if release is None or release.hub_id is None:
        known = ", ".join(f"hf:{r.hub_id}" for r in RELEASES if r.hub_id)
        raise CheckpointError(f"{spec}: not a known release layout; known: {known} "
                              "(or download the files and pass the path)")
    try:
        from huggingface_hub import constants, hf_hub_download
    except ImportError:
        raise CheckpointError(f"{spec}: needs huggingface_hub: {INSTALL_HINT}, or download "
                              f"{', '.join(release.files)} from {release.page} and pass the file") from None
    paths = []
    for name in release.files:
        try:
            paths.append(Path(hf_hub_download(release.hub_id, name)))
        except Exception as e:  # offline, not cached, no such file, network errors
            reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"{spec}: cannot fetch {name} ({type(e).__name__}: {reason}); when offline, "
                                  f"download {', '.join(release.files)} from {release.page} by hand and pass "
                                  "the file") from None
    weights = paths[0]
    commit = weights.parent.name  # huggingface_hub layout: …/snapshots/<commit>/<file>
    target = Path(constants.HF_HUB_CACHE) / "audiomask" / repo_id.replace("/", "--") / f"{commit}.safetensors"
    if target.is_file():
        return target
    from audiomask.interop.formats import read_release

    model, provenance = read_release(weights, sample_rate=release.sample_rate)
    provenance.update(origin=f"{spec}@{commit}", license=provenance.get("license", release.license),
                      release=release.name)
    save_model(model, target, metadata=provenance)
    return target
