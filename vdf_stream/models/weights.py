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

import collections
import io
import os
import pickle
import types
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


# Storage classes a TorchScript pickle names (``torch FloatStorage`` ...) and their dtypes.
_STORAGE_TYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64, "IntStorage": torch.int32, "ShortStorage": torch.int16,
    "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


class _ScriptModule:
    """What a ``__torch__.*`` class of a TorchScript pickle becomes: its pickled attributes
    (``training``, submodules, parameters, buffers, constants) in a plain dict."""

    attributes: Mapping = types.MappingProxyType({})  # until the pickle's BUILD sets them

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"a module's state is a {type(state).__name__}, "
                                         f"not a dict of attributes")
        self.attributes = state


def _same(value: object, *_: object) -> object:
    """``torch.jit._pickle``'s list builders and type tags: the plain value."""
    return value


# What data.pkl may name besides the module classes, and what it gets instead.
_JIT_PICKLE_HELPERS = {"build_intlist", "build_doublelist", "build_boollist",
                       "build_tensorlist", "restore_type_tag"}


class _StorageType:
    """A storage class named by the pickle: the dtype of the bytes it persists."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class _TorchScriptUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript ``data.pkl`` into :class:`_ScriptModule` trees, refusing every
    global but the few that pickle needs; tensors are rebuilt here from the archive's
    ``data/<key>`` records (never by torch's own reconstruction functions)."""

    def __init__(self, archive: zipfile.ZipFile, root: str, source: Path):
        super().__init__(io.BytesIO(archive.read(f"{root}/data.pkl")))
        self.archive = archive
        self.root = root
        self.source = source
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptModule
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return self.rebuild_tensor
        if module == "torch" and name in _STORAGE_TYPES:
            return _StorageType(_STORAGE_TYPES[name])
        if module == "torch.jit._pickle" and name in _JIT_PICKLE_HELPERS:
            return _same
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise AssetError(f"cannot read {self.source}: its data.pkl asks for {module}.{name}, "
                         f"which no TorchScript module's weights need (refused)")

    def persistent_load(self, pid: object) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
                and isinstance(pid[4], int)):
            raise AssetError(f"cannot read {self.source}: a storage record {pid!r:.80} is not "
                             f"one of a TorchScript archive")
        _, kind, key, _, count = pid
        if key not in self.storages:
            try:
                data = bytearray(self.archive.read(f"{self.root}/data/{key}"))
            except KeyError:
                raise AssetError(f"cannot read {self.source}: its storage {key} is missing") from None
            size = torch.empty((), dtype=kind.dtype).element_size()
            if len(data) != count * size:
                raise AssetError(f"cannot read {self.source}: storage {key} holds {len(data)} "
                                 f"bytes, not {count} of {kind.dtype}")
            self.storages[key] = (torch.frombuffer(data, dtype=kind.dtype) if data
                                  else torch.empty(0, dtype=kind.dtype))
        return self.storages[key]

    def rebuild_tensor(self, storage: object, offset: object, size: object, stride: object,
                       *_: object) -> torch.Tensor:
        """``_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[,
        metadata])``: a view of the storage, checked to lie inside it, copied out."""
        shape_ok = (isinstance(size, tuple) and isinstance(stride, tuple)
                    and len(size) == len(stride)
                    and all(isinstance(n, int) and n >= 0 for n in (*size, *stride)))
        if not (isinstance(storage, torch.Tensor) and isinstance(offset, int) and offset >= 0
                and shape_ok):
            raise AssetError(f"cannot read {self.source}: a tensor record is malformed")
        extent = offset + sum((n - 1) * step for n, step in zip(size, stride)) + 1
        if 0 not in size and extent > storage.numel():
            raise AssetError(f"cannot read {self.source}: a tensor of shape {list(size)} runs "
                             f"past its storage of {storage.numel()} elements")
        if 0 in size:
            return torch.empty(size, dtype=storage.dtype)
        return storage.as_strided(size, stride, offset).clone()


def _archive_root(archive: zipfile.ZipFile, path: Path) -> str:
    """The top folder holding ``data.pkl`` (the name the archive was saved under)."""
    roots = [name[:-len("/data.pkl")] for name in archive.namelist()
             if name.endswith("/data.pkl") and name.count("/") == 1]
    if len(roots) != 1:
        raise AssetError(f"cannot read {path}: not a TorchScript archive (no single "
                         f"<folder>/data.pkl in it)")
    root = roots[0]
    order = f"{root}/byteorder"
    if order in archive.namelist() and archive.read(order).strip() not in (b"little", b""):
        raise AssetError(f"cannot read {path}: its tensors are stored big-endian")
    return root


def _collect_tensors(node: _ScriptModule, prefix: str, state: dict[str, torch.Tensor],
                     ancestors: tuple[int, ...] = ()) -> None:
    """Every tensor attribute under ``node`` by dotted name, depth first in pickle order (a
    module reached under two names is listed under both, as ``state_dict`` does)."""
    if id(node) in ancestors:
        raise AssetError(f"a module contains itself at {prefix[:-1] or 'the root'}")
    for name, value in node.attributes.items():
        if not isinstance(name, str):
            continue
        if isinstance(value, torch.Tensor):
            state[prefix + name] = value.detach()  # whatever the pickle set on it, dropped
        elif isinstance(value, _ScriptModule):
            _collect_tensors(value, f"{prefix}{name}.", state, (*ancestors, id(node)))


def read_torchscript_state(path: Path) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive, by their dotted module names,
    read without running code from it (no ``torch.jit.load``).

    A TorchScript archive is a zip of one folder: ``data.pkl`` pickles the module tree
    (``__torch__.*`` classes whose state is a dict of attributes: ``training``, submodules,
    parameters, buffers), ``data/<key>`` holds each tensor storage's raw little-endian bytes,
    ``code/`` the TorchScript source and ``constants.pkl`` the code's constants (neither
    read). ``data.pkl`` is unpickled with every global refused but the module classes (which
    become plain attribute holders), the tensor and storage reconstruction (done here from
    ``data/<key>``), the JIT's list builders and ``collections.OrderedDict``; the state is
    every tensor attribute, named by its path (``conv2.downsample.0.running_mean``).

    Raises:
        AssetError: the archive cannot be read this way.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            root = _archive_root(archive, path)
            tree = _TorchScriptUnpickler(archive, root, path).load()
    except AssetError:
        raise
    except (zipfile.BadZipFile, OSError) as error:
        raise AssetError(f"cannot read {path} as a TorchScript archive: {error}") from None
    except Exception as error:  # a malformed pickle: any of pickle's many exceptions
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AssetError(f"cannot read {path}: its data.pkl is damaged ({reason})") from None
    if not isinstance(tree, _ScriptModule):
        raise AssetError(f"cannot read {path}: its data.pkl holds a {type(tree).__name__}, "
                         f"not a module")
    state: dict[str, torch.Tensor] = {}
    try:
        _collect_tensors(tree, "", state)
    except AssetError as error:
        raise AssetError(f"cannot read {path}: {error}") from None
    return state


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


def located(name: str, package_files: list[Path] | tuple = ()) -> Path | None:
    """The weights of ``name`` (of :data:`vdf_stream.assets.USER_WEIGHTS`) to load: the
    user's added copy, else the first of ``package_files`` (where another package keeps its
    own download) that is there, else ``None``."""
    from ..assets import user_weights_path

    for path in [user_weights_path(name), *package_files]:
        if path.is_file():
            return path
    return None


def add(name: str, path: str | os.PathLike, expected: Mapping[str, tuple[int, ...]],
        network: str) -> Path:
    """Read a user's copy of ``name``'s weights without running code from it, verify it
    against ``expected`` and keep the cleaned state dict in the cache; return the kept path.

    Raises:
        AssetError: the file is missing, unreadable, or not ``network``'s weights.
    """
    from ..assets import user_weights_path

    source = Path(path).expanduser()
    state = verify_state_dict(read_checkpoint(source), expected, network, str(source))
    return keep(state, user_weights_path(name))


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


# load_shared's networks: (network class, file, its modification time, device, dtype) -> module
_SHARED: dict[tuple, nn.Module] = {}


def load_shared(make: Callable[[], nn.Module], path: Path, network: str,
                device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
                ) -> nn.Module:
    """:func:`load_kept`, once per file, device and dtype: a later call gets the same frozen
    module, and a file replaced since (a new ``models add``) is read again."""
    from .shared import canonical_device

    device = canonical_device(device)
    key = (make, str(path), path.stat().st_mtime_ns, device, dtype)
    if key not in _SHARED:
        _SHARED[key] = load_kept(make, path, network, device, dtype)
    return _SHARED[key]
