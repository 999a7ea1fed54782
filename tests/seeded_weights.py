"""Seeded stand-ins for the weights a user brings (BiSeNet, FAN, S3FD): the real
architectures with random weights, written where vdf-stream looks for them, so that the
attack and measurement paths run end to end on machines that cannot reach the real files.

``seeded_cache(folder)`` makes a cache folder holding the pinned models (linked from the
real cache, fetched when missing, looked up when this module is imported) and the seeded
checkpoints; point ``VDF_STREAM_CACHE`` at it.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from vdf_stream import assets

# Random weights score every prior of a head near one value (0.4 to 0.75 on real frames),
# so all or none pass the package's 0.5. Each conf head's face-minus-background logit is
# multiplied by a gain and shifted (weights and biases times the gain, the face bias
# shifted) so that on real frames about 1% of a head's priors score above 0.5 and about
# 10% above 0.05, at every stride: measured once on the seed-0 network.
CONF_CALIBRATION = {
    "conv3_3_norm_mbox_conf": (18.0, -13.2),
    "conv4_3_norm_mbox_conf": (43.0, -19.7),
    "conv5_3_norm_mbox_conf": (20.0, -3.2),
    "fc7_mbox_conf": (440.0, -2.1),
    "conv6_2_mbox_conf": (2500.0, -2.2),
    "conv7_2_mbox_conf": (900.0, 11.7),
}


def _with_statistics(network: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``network`` with seeded weights and non-trivial batch-norm statistics, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.rand(module.running_mean.shape, generator=generator)
                                      * 0.2 - 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator)
                                     + 0.5)
    return network.eval()


@functools.lru_cache(maxsize=None)
def state(name: str) -> dict[str, torch.Tensor]:
    """The seeded state dict of ``name`` (a user-weights name), made once per session."""
    from vdf_stream.models import bisenet, fan, s3fd

    module, make, seed = {"bisenet": (bisenet, "BiSeNet", 0), "fan": (fan, "FAN", 1),
                          "s3fd": (s3fd, "S3FD", 0)}[name]
    make = getattr(module, make)
    torch.manual_seed(seed)
    with torch.no_grad():
        made = dict(_with_statistics(make(), seed).state_dict())
    if name == "s3fd":  # some faces found, of many sizes, as tests/test_s3fd.py measures
        for head, (gain, shift) in CONF_CALIBRATION.items():
            made[f"{head}.weight"] = made[f"{head}.weight"] * gain
            made[f"{head}.bias"] = made[f"{head}.bias"] * gain
            made[f"{head}.bias"][-1] += shift
    return made


@functools.lru_cache(maxsize=None)
def pinned_models() -> dict[str, Path]:
    """The pinned model files in the real cache (fetched when missing), by name: looked up
    once, before a test points ``VDF_STREAM_CACHE`` elsewhere."""
    return {asset.name: assets.fetch(asset.name, progress=False)
            for asset in assets.ASSETS.values() if asset.kind == "model"}


pinned_models()  # at import, while VDF_STREAM_CACHE is still the real one


def seeded_cache(folder: Path, models: tuple[str, ...] = ("bisenet", "fan", "s3fd")) -> Path:
    """A cache folder with the pinned models and the seeded checkpoints of ``models``."""
    target = folder / "models"
    target.mkdir(parents=True, exist_ok=True)
    for name, path in pinned_models().items():
        link = target / name
        if not link.exists():
            link.symlink_to(path)
    for name in models:
        torch.save(state(name), target / assets.USER_WEIGHTS[name])
    return folder
