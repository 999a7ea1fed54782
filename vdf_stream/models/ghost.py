"""Ghost networks: the surrogates, each step a slightly different network.

A perturbation optimised against fixed networks learns their exact weights as well as what
they share with other networks of their kind; the first part does not transfer. Adding
fresh multiplicative noise to the feature maps of the networks at every step (Li et al.,
"Learning Transferable Adversarial Examples via Ghost Networks", AAAI 2020, which uses
dropout) makes each step read a new member of a family of networks around the one given,
so the change has to work on all of them: a cheap ensemble, no more forward or backward
passes than before.

:func:`feature_noise` wraps every convolution of the given modules (``nn.Conv2d`` and the
convolutions of :class:`~vdf_stream.models.tflite.TFLiteModule` graphs but their heads) for
the length of a ``with`` block: each output is multiplied element by element by
``1 + strength * u``, ``u ~ U(-1, 1)``, drawn anew at every call. A graph's heads, the
convolutions that write its outputs, are left alone: noise there moves the readings by
itself (the face mesh's points by 0.10 of the eye distance at strength 0.1, against
0.013-0.020 without). Outside the block the modules are unchanged.

Measured (docs/history.md, ghost networks): no gain in transfer over draws of the
noise, and none through the filter; kept to measure it again
(``benchmarks/transfer.py --techniques margin+ghost``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from .tflite import TFLiteModule


def _noisy(output: torch.Tensor, strength: float,
           generator: torch.Generator | None) -> torch.Tensor:
    # a generator on another device (a CPU one for networks on the GPU) would draw there and
    # copy every feature map across: draw where the features are, from that device's stream
    if generator is not None and generator.device.type != output.device.type:
        generator = None
    draw = torch.rand(output.shape, generator=generator, device=output.device,
                      dtype=output.dtype)
    return output * (1.0 + strength * (2.0 * draw - 1.0))


@contextlib.contextmanager
def feature_noise(modules: Iterable[nn.Module], strength: float,
                  generator: torch.Generator | None = None) -> Iterator[int]:
    """Within the block, every convolution of ``modules`` has its output multiplied by
    fresh noise ``1 + strength * U(-1, 1)``; yields how many convolutions were wrapped.
    ``strength`` 0 wraps nothing."""
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"strength must be in [0, 1), got {strength}")
    handles = []
    patched: list[TFLiteModule] = []
    seen: set[int] = set()
    count = 0
    try:
        if strength > 0:
            for root in modules:
                for module in root.modules():
                    if id(module) in seen:
                        continue
                    seen.add(id(module))
                    if isinstance(module, nn.Conv2d):
                        handles.append(module.register_forward_hook(
                            lambda _module, _inputs, output: _noisy(output, strength, generator)))
                        count += 1
                    elif isinstance(module, TFLiteModule):
                        count += _patch(module, strength, generator)
                        patched.append(module)
        yield count
    finally:
        for handle in handles:
            handle.remove()
        for module in patched:
            module.__dict__.pop("_run_CONV_2D", None)


def _heads(module: TFLiteModule) -> set[int]:
    """The convolutions whose output reaches a graph output through no other convolution
    (as ids of their attribute dicts, which the graph hands to each run): the heads that
    write the readings themselves. Noise there would move the readings by itself."""
    producer = {step.output: step for step in module._steps}
    heads: set[int] = set()
    pending = list(module.output_indices)
    visited: set[int] = set()
    while pending:
        index = pending.pop()
        if index in visited or index not in producer:
            continue
        visited.add(index)
        step = producer[index]
        if step.kind == "CONV_2D":
            heads.add(id(step.attributes))
            continue
        pending.extend(a for a in step.arguments if isinstance(a, int))
    return heads


def _patch(module: TFLiteModule, strength: float, generator: torch.Generator | None) -> int:
    """Shadow the graph's convolution with one that adds noise to every convolution but the
    heads (an instance attribute; removing it restores the class's method)."""
    run = type(module)._run_CONV_2D
    heads = _heads(module)

    def noisy_convolution(args, options):
        output = run(module, args, options)
        return output if id(options) in heads else _noisy(output, strength, generator)

    module.__dict__["_run_CONV_2D"] = noisy_convolution
    return sum(1 for step in module._steps
               if step.kind == "CONV_2D" and id(step.attributes) not in heads)
