"""Weights a user brings: checkpoints that are on no package registry (BiSeNet's
``79999_iter.pth``, FAN's and S3FD's files from the ``face-alignment`` package's own cache).

One home for reading, checking and keeping them:

- :func:`read_checkpoint` reads a file without running code from it: a state dict through
  ``torch.load(weights_only=True)``, a TorchScript archive (what ``face-alignment`` 1.3+
  downloads for FAN) through :func:`read_torchscript_state`, which reads the archive's
  tensors and module attribute names only.
- :func:`verify_state_dict` checks every parameter name and shape against the network's
  and returns a cleaned copy (``module.`` prefixes gone, missing batch-norm counters added).
- :func:`keep` writes the cleaned copy into the cache atomically; the network later loads it
  with ``strict=True`` (:func:`load_kept`).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import AssetError


def _describe(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def expected_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Every state-dict entry of ``model`` and its shape."""
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with a ``code/`` folder)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name or name.startswith("code/")
                       for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_torchscript_state(path: Path) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive, by their dotted module names,
    read without running code from it (no ``torch.jit.load``).

    Raises:
        AssetError: the archive cannot be read this way.
    """
    raise AssetError(f"cannot read {path}: TorchScript archives are not read yet")


def read_checkpoint(path: str | os.PathLike, unwrap: tuple[str, ...] = ("state_dict",)) -> object:
    """What a checkpoint file holds, read without running code from it.

    A TorchScript archive gives its state (:func:`read_torchscript_state`); any other file
    goes through ``torch.load(map_location="cpu", weights_only=True)``. A mapping holding
    one of ``unwrap`` (a training checkpoint: ``{"state_dict": ..., "epoch": ...}``) gives
    that entry.

    Raises:
        AssetError: the file is missing, not a checkpoint, or holds objects other than
            tensors and containers.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise AssetError(f"no such file: {path}")
    if is_torchscript(path):
        return read_torchscript_state(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt archive, or a pickle weights_only refuses
        # torch's own message advises weights_only=False, which must never be taken for a
        # file from elsewhere: say what is wrong without repeating that advice
        text = str(error)
        if "Unsupported global" in text:
            reason = "it holds objects other than tensors (not a plain state dict)"
        elif "weights_only" in text or "zip" in text.lower() or "magic" in text.lower() \
                or "load key" in text:
            reason = "not a PyTorch checkpoint (damaged, truncated or another kind of file)"
        else:
            reason = text.strip().splitlines()[0] if text.strip() else type(error).__name__
        raise AssetError(f"cannot read {path} as a PyTorch checkpoint: {reason}") from None
    if isinstance(state, Mapping):
        for key in unwrap:
            if isinstance(state.get(key), Mapping):
                return state[key]
    return state


def verify_state_dict(state: object, expected: Mapping[str, tuple[int, ...]], network: str,
                      source: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """Check a loaded state dict against ``expected`` (name -> shape); return it cleaned
    (``module.`` prefixes removed, missing ``num_batches_tracked`` counters added as 0,
    tensors made contiguous), in ``expected``'s order.

    Args:
        network: how the message names the network ("the face-parsing.PyTorch BiSeNet
            checkpoint (79999_iter.pth, 19 classes)").

    Raises:
        AssetError: not a state dict, or a key missing, unexpected or of the wrong shape.
    """
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise AssetError(f"{source} is not a state dict (a mapping of parameter names to "
                         f"tensors); it holds a {type(state).__name__}")
    if state and all(key.startswith("module.") for key in state):  # saved from DataParallel
        state = {key[len("module."):]: value for key, value in state.items()}
    not_tensors = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    missing = [key for key in expected if key not in state and not key.endswith("num_batches_tracked")]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [f"{key} {tuple(state[key].shape)} (expected {expected[key]})"
                   for key in expected if key in state and isinstance(state[key], torch.Tensor)
                   and tuple(state[key].shape) != expected[key]]
    problems = []
    if not_tensors:
        problems.append(f"values that are not tensors: {_describe(not_tensors)}")
    if missing:
        problems.append(f"{len(missing)} missing parameters: {_describe(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected parameters: {_describe(unexpected)}")
    if wrong_shape:
        problems.append(f"wrong shapes: {_describe(wrong_shape)}")
    if problems:
        raise AssetError(f"{source} is not {network}: " + "; ".join(problems))
    cleaned = {}
    for key in expected:
        if key in state:
            cleaned[key] = state[key].detach().contiguous()
        else:  # a num_batches_tracked counter absent from an old checkpoint
            cleaned[key] = torch.zeros((), dtype=torch.long)
    return cleaned


def keep(state: dict[str, torch.Tensor], target: Path) -> Path:
    """Write a verified state dict to ``target`` atomically (a ``.part`` file renamed)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        torch.save(state, partial)
        os.replace(partial, target)
    except OSError as error:
        raise AssetError(f"cannot write {target}: {error.strerror or error}") from None
    return target


def load_kept(make: Callable[[], nn.Module], path: Path, network: str,
              device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
    """``make()`` with the verified weights of ``path`` loaded ``strict=True``, in eval mode,
    frozen, on ``device`` in ``dtype``."""
    model = make()
    state = verify_state_dict(read_checkpoint(path), expected_shapes(model), network, str(path))
    model.load_state_dict(state, strict=True)
    model = model.to(device=device, dtype=dtype).eval()
    model.requires_grad_(False)
    return model
