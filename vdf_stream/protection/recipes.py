"""Which models a run attacks: the ``targets`` option, and a pipeline's recipe (``against``)
narrowed to the models whose weights this machine has.

FAN (with the S3FD detector it crops from) and BiSeNet are the user's to bring: on no
registry the project fetches from. Named in ``targets`` they are required (absent, the run
stops with the :class:`~vdf_stream.errors.AssetError` saying how to get them, before any
output is written); brought in by a recipe they are attacked when present and otherwise
named in one line, with how to get them.
"""

from __future__ import annotations

from .options import RECIPES, ProtectionOptions
from ..errors import AssetError

FAN_AND_S3FD_MISSING = (
    "FAN's and S3FD's weights (2DFAN-4 and s3fd-619a316812.pth) are not here: install "
    "face-alignment (pip install face-alignment) and run it once online, which downloads "
    "them to its own cache, or add your copies with `vdf-stream models add fan PATH` and "
    "`vdf-stream models add s3fd PATH`")


def missing(model: str) -> str | None:
    """How to get what ``model`` needs, or ``None`` when its weights are here (models the
    project fetches itself are always ``None``)."""
    if model == "fan":
        from ..models import fan, s3fd

        fan_absent, s3fd_absent = fan.weights_path() is None, s3fd.weights_path() is None
        if fan_absent and s3fd_absent:
            return FAN_AND_S3FD_MISSING
        if fan_absent:
            return fan.MISSING_MESSAGE
        return s3fd.MISSING_MESSAGE if s3fd_absent else None
    if model == "bisenet":
        from ..models import bisenet

        return None if bisenet.cached_path().is_file() else bisenet.MISSING_MESSAGE
    return None


def resolve_targets(options: ProtectionOptions) -> tuple[list[str], str | None]:
    """``(models attacked, note)``: the ``targets``, plus the recipe's models that are here;
    ``note`` names the recipe's models left out and how to get them (``None``: none left).

    Raises:
        AssetError: a model named in ``targets`` lacks its weights.
    """
    chosen = options.target_models()
    for model in chosen:
        reason = missing(model)
        if reason is not None:
            raise AssetError(f"targets={model}: {reason}")
    if options.against == "none":
        return chosen, None
    left_out = {}
    for model in RECIPES[options.against]:
        if model in chosen:
            continue
        reason = missing(model)
        if reason is None:
            chosen.append(model)
        else:
            left_out[model] = reason
    if not left_out:
        return chosen, None
    names = " and ".join({"fan": "FAN", "bisenet": "BiSeNet"}.get(m, m) for m in left_out)
    reasons = "; ".join(dict.fromkeys(left_out.values()))
    note = (f"against {options.against}: protecting against {'+'.join(chosen)} without "
            f"{names}, whose weights are missing. {reasons}")
    return chosen, note
