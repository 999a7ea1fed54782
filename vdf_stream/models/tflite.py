"""Read a TensorFlow Lite model and run it as a differentiable ``torch.nn.Module``.

Two steps, kept apart:

- :func:`~vdf_stream.models.tflite_graph.read_graph` parses the flatbuffer (with the ``tflite`` schema package) into a
  :class:`GraphSpec`: tensors, operators in execution order, and the constant tensors as
  numpy arrays. Weights stored as float16 (or int8 / uint8 / int16 with scales and zero
  points) behind ``DEQUANTIZE`` operators are restored to float32 here and the
  ``DEQUANTIZE`` operators are dropped.
- :class:`TFLiteModule` executes a :class:`GraphSpec` op by op with torch functions. Float
  constants become ``nn.Parameter`` s (so ``.to(device, dtype)``, ``state_dict`` and
  ``requires_grad_`` behave as usual); integer constants (shapes, paddings) become plain
  Python values. Nothing in ``forward`` leaves torch, so gradients flow to the inputs.

Layout: TFLite is NHWC, torch convolutions want NCHW. Every rank-4 tensor of the graph is
held as NCHW at run time (weights are permuted once when the module is built); tensors of
any other rank keep TFLite's axis order. Rank-4 graph inputs are therefore given as
``(B, C, H, W)`` and rank-4 outputs come back as ``(B, C, H, W)``; where a rank-4 tensor
meets a layout-sensitive operator (RESHAPE, FULLY_CONNECTED), it is viewed as NHWC first,
so results equal TFLite's element for element.

Batch: axis 0 is taken to be the batch axis everywhere. A file says batch 1; the module
accepts any batch size (RESHAPE keeps the run-time batch).

Padding ``SAME`` follows TFLite exactly: ``out = ceil(in / stride)``, the total padding
``max((out - 1) * stride + (kernel - 1) * dilation + 1 - in, 0)``, of which
``total // 2`` goes before (top / left) and the rest after (bottom / right). Max pooling
pads with -inf and average pooling divides by the number of real (unpadded) elements, as
TFLite does.

Supported operators: ADD, SUB, MUL, DIV, CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV,
FULLY_CONNECTED, MAX_POOL_2D, AVERAGE_POOL_2D, PAD, PADV2, RESHAPE, CONCATENATION,
RESIZE_BILINEAR (align_corners, half_pixel_centers or neither), RELU, RELU6,
RELU_N1_TO_1, LEAKY_RELU, PRELU, LOGISTIC, TANH, HARD_SWISH, DEQUANTIZE, and the
MediaPipe custom operator ``Convolution2DTransposeBias`` (a transposed convolution plus
bias, options in its custom_options bytes). Fused activations NONE, RELU, RELU_N1_TO_1,
RELU6 and TANH. Fully quantised graphs (integer activations) are not supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn



from .tflite_graph import (_ACTIVATIONS, _NHWC_TO_NCHW_AXIS, _PADDING_SAME, _UNARY, GraphSpec,
                           ModelConversionError, OperatorSpec, read_graph)

# --------------------------------------------------------------------------------------
# Running the graph


@dataclass(frozen=True)
class _Step:
    """One operator ready to run: arguments are tensor indices (run-time values) or
    parameter names (constants prepared for the torch layout)."""

    kind: str
    arguments: tuple[int | str | None, ...]
    output: int
    attributes: dict[str, Any]


def _same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite's SAME padding along one axis: (before, after), the extra one after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _activation(x: torch.Tensor, code: int) -> torch.Tensor:
    if code == 0:
        return x
    if code == 1:
        return F.relu(x)
    if code == 2:
        return torch.clamp(x, -1.0, 1.0)
    if code == 3:
        return F.relu6(x)
    if code == 4:
        return torch.tanh(x)
    raise ModelConversionError(f"fused activation {_ACTIVATIONS.get(code, code)} is not supported")


def _to_nchw_broadcast(array: np.ndarray, rank: int) -> np.ndarray:
    """A constant operand of a rank-4 elementwise op, made to broadcast against NCHW."""
    if array.ndim > rank:
        raise ModelConversionError(f"cannot broadcast a rank-{array.ndim} constant to rank {rank}")
    array = array.reshape((1,) * (rank - array.ndim) + array.shape)
    return np.ascontiguousarray(array.transpose(0, 3, 1, 2)) if rank == 4 else array


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1) if x.dim() == 4 else x


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2) if x.dim() == 4 else x


class TFLiteModule(nn.Module):
    """A TFLite graph as a differentiable module. See the module docstring for layouts.

    Args:
        spec: the parsed graph (:func:`read_graph`).
        outputs: tensor names to return instead of the graph's own outputs (e.g. the
            logits before a final LOGISTIC).

    ``forward(*inputs)`` takes one tensor per graph input (rank-4 ones as NCHW), casts them
    to the module's dtype and returns a tuple with one tensor per output, in order.
    """

    def __init__(self, spec: GraphSpec, outputs: list[str] | None = None):
        super().__init__()
        self.input_indices = spec.inputs
        self.output_indices = (
            spec.outputs if outputs is None else tuple(spec.tensor_index(n) for n in outputs)
        )
        self.input_names = tuple(spec.tensors[i].name for i in self.input_indices)
        self.output_names = tuple(spec.tensors[i].name for i in self.output_indices)
        self.input_shapes = tuple(spec.tensors[i].shape for i in self.input_indices)
        self._spec_shapes = {t.index: t.shape for t in spec.tensors}
        self._constants = spec.constants
        self._parameter_names: dict[tuple[int, str], str] = {}
        self._tensor_names = {t.index: t.name for t in spec.tensors}
        steps: list[_Step] = []
        for op in spec.operators:
            steps.append(self._prepare(op))
        self._constants = {}  # numpy copies no longer needed: the parameters hold them
        self._steps = self._prune(steps)
        # Last step that reads each value, so intermediate tensors can be dropped early.
        last_use: dict[int, int] = {}
        for position, step in enumerate(self._steps):
            for argument in step.arguments:
                if isinstance(argument, int):
                    last_use[argument] = position
        keep = set(self.output_indices)
        self._release = [
            tuple(i for i, p in last_use.items() if p == position and i not in keep)
            for position in range(len(self._steps))
        ]

    # -- building ----------------------------------------------------------------------

    def _prune(self, steps: list[_Step]) -> list[_Step]:
        """Drop steps that no requested output depends on."""
        needed = set(self.output_indices)
        kept: list[_Step] = []
        for step in reversed(steps):
            if step.output in needed:
                kept.append(step)
                needed.update(a for a in step.arguments if isinstance(a, int))
        missing = needed - {s.output for s in kept} - set(self.input_indices)
        if missing:
            names = ", ".join(self._tensor_names[i] for i in sorted(missing))
            raise ModelConversionError(f"tensors {names} are neither computed nor inputs")
        return kept[::-1]

    def _parameter(self, index: int, role: str, array: np.ndarray) -> str:
        """Register constant ``index`` prepared for ``role`` as a parameter; its name."""
        key = (index, role)
        if key not in self._parameter_names:
            base = "".join(c if c.isalnum() else "_" for c in self._tensor_names[index])
            name = f"{base.strip('_') or 'tensor'}_{index}"
            if role != "value":
                name += f"_{role}"
            self.register_parameter(
                name, nn.Parameter(torch.from_numpy(np.ascontiguousarray(array, np.float32)))
            )
            self._parameter_names[key] = name
        return self._parameter_names[key]

    def _float_constant(self, index: int) -> np.ndarray:
        array = self._constants[index]
        if array.dtype != np.float32:
            raise ModelConversionError(
                f"tensor {self._tensor_names[index]!r} is {array.dtype} where float weights "
                "were expected"
            )
        return array

    def _int_constant(self, index: int, what: str) -> list[int]:
        if index not in self._constants:
            raise ModelConversionError(f"{what} must be a constant tensor")
        return [int(v) for v in np.asarray(self._constants[index]).reshape(-1)]

    def _operand(self, index: int, rank: int) -> int | str:
        """A run-time value, or a float constant shaped to broadcast at ``rank``."""
        if index not in self._constants:
            return index
        array = self._float_constant(index)
        return self._parameter(index, f"r{rank}", _to_nchw_broadcast(array, rank))

    def _prepare(self, op: OperatorSpec) -> _Step:
        kind, inputs, options = op.kind, op.inputs, dict(op.options)
        output = op.outputs[0]
        out_shape = self._spec_shapes[output]
        rank = len(out_shape)

        def weight(index: int, role: str, transform) -> str:
            if index not in self._constants:
                raise ModelConversionError(f"{kind}: weights computed at run time are unsupported")
            return self._parameter(index, role, transform(self._float_constant(index)))

        def bias(position: int) -> str | None:
            if len(inputs) <= position or inputs[position] < 0:
                return None
            index = inputs[position]
            return self._parameter(index, "value", self._float_constant(index))

        if kind == "CONV_2D":
            w = weight(inputs[1], "oihw", lambda a: a.transpose(0, 3, 1, 2))
            options["groups"] = 1
            return _Step(kind, (inputs[0], w, bias(2)), output, options)
        if kind == "DEPTHWISE_CONV_2D":
            # [1, KH, KW, C * M] -> [C * M, 1, KH, KW]; groups = input channels.
            w = weight(inputs[1], "oihw", lambda a: a.transpose(3, 0, 1, 2))
            options["groups"] = self._spec_shapes[inputs[0]][3]
            return _Step("CONV_2D", (inputs[0], w, bias(2)), output, options)
        if kind == "TRANSPOSE_CONV":
            # inputs: output shape, weights [O, KH, KW, I], data, optional bias.
            w = weight(inputs[1], "iohw", lambda a: a.transpose(3, 0, 1, 2))
            options["output_hw"] = tuple(self._int_constant(inputs[0], "output shape")[1:3])
            options.setdefault("activation", 0)
            return _Step("TRANSPOSE_CONV", (inputs[2], w, bias(3)), output, options)
        if kind == "Convolution2DTransposeBias":
            w = weight(inputs[1], "iohw", lambda a: a.transpose(3, 0, 1, 2))
            options["output_hw"] = None
            return _Step("TRANSPOSE_CONV", (inputs[0], w, bias(2)), output, options)
        if kind == "FULLY_CONNECTED":
            if options.get("weights_format", 0) != 0:
                raise ModelConversionError("FULLY_CONNECTED: shuffled weights are not supported")
            w = weight(inputs[1], "value", lambda a: a)
            return _Step(kind, (inputs[0], w, bias(2)), output, options)
        if kind in ("ADD", "SUB", "MUL", "DIV"):
            operands = (self._operand(inputs[0], rank), self._operand(inputs[1], rank))
            ranks = tuple(len(self._spec_shapes[i]) for i in inputs[:2])
            return _Step(kind, operands, output, options | {"ranks": ranks, "rank": rank})
        if kind == "PRELU":
            return _Step(
                kind, (inputs[0], self._operand(inputs[1], rank)), output,
                {"ranks": (rank, len(self._spec_shapes[inputs[1]])), "rank": rank},
            )
        if kind in _UNARY:
            return _Step(kind, (inputs[0],), output, options)
        if kind == "DEQUANTIZE":  # of a run-time float16 tensor: a cast
            return _Step(kind, (inputs[0],), output, {})
        if kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            return _Step(kind, (inputs[0],), output, options)
        if kind in ("PAD", "PADV2"):
            pads = self._int_constant(inputs[1], "PAD paddings")
            pairs = [(pads[2 * a], pads[2 * a + 1]) for a in range(len(pads) // 2)]
            if len(pairs) == 4:
                pairs = [pairs[0], pairs[3], pairs[1], pairs[2]]  # NHWC -> NCHW
            flat: list[int] = []
            for before, after in reversed(pairs):
                flat += [before, after]
            value = 0.0
            if kind == "PADV2" and len(inputs) > 2:
                value = float(np.asarray(self._constants[inputs[2]]).reshape(-1)[0])
            return _Step("PAD", (inputs[0],), output, {"pads": tuple(flat), "value": value})
        if kind == "RESHAPE":
            return _Step(
                kind, (inputs[0],), output,
                {"out_shape": out_shape, "in_batch": self._spec_shapes[inputs[0]][:1]},
            )
        if kind == "CONCATENATION":
            axis = options["axis"] % rank
            if rank == 4:
                axis = _NHWC_TO_NCHW_AXIS[axis]
            operands = tuple(self._operand(i, rank) for i in inputs)
            attributes = {"axis": axis, "activation": options["activation"]}
            return _Step(kind, operands, output, attributes)
        if kind == "RESIZE_BILINEAR":
            options["size"] = tuple(self._int_constant(inputs[1], "RESIZE_BILINEAR size"))
            return _Step(kind, (inputs[0],), output, options)
        raise ModelConversionError(f"operator {kind} is not supported")  # pragma: no cover

    # -- running -----------------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        for parameter in self.parameters():
            return parameter.dtype
        return torch.float32

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.input_indices):
            raise ValueError(f"expected {len(self.input_indices)} inputs, got {len(inputs)}")
        dtype = self.dtype
        values: dict[int, torch.Tensor] = {}
        for index, x in zip(self.input_indices, inputs):
            name, rank = self._tensor_names[index], len(self._spec_shapes[index])
            if not torch.is_floating_point(x):
                raise TypeError(f"input {name!r} must be a floating-point tensor, got {x.dtype}")
            if x.dim() != rank:
                raise ValueError(f"input {name!r} must have rank {rank}, got {tuple(x.shape)}")
            values[index] = x.to(dtype)
        for step, release in zip(self._steps, self._release):
            arguments = [
                None if a is None else values[a] if isinstance(a, int) else getattr(self, a)
                for a in step.arguments
            ]
            values[step.output] = getattr(self, "_run_" + step.kind)(arguments, step.attributes)
            for index in release:
                del values[index]
        return tuple(values[i] for i in self.output_indices)

    def _run_CONV_2D(self, args, o):
        x, w, b = args
        kh, kw = w.shape[2], w.shape[3]
        stride, dilation = (o["stride_h"], o["stride_w"]), (o["dilation_h"], o["dilation_w"])
        padding: tuple[int, int] | int = 0
        if o["padding"] == _PADDING_SAME:
            top, bottom = _same_padding(x.shape[2], kh, stride[0], dilation[0])
            left, right = _same_padding(x.shape[3], kw, stride[1], dilation[1])
            if top == bottom and left == right:
                padding = (top, left)
            else:
                x = F.pad(x, (left, right, top, bottom))
        y = F.conv2d(x, w, b, stride, padding, dilation, o["groups"])
        return _activation(y, o["activation"])

    def _run_TRANSPOSE_CONV(self, args, o):
        x, w, b = args
        kh, kw = w.shape[2], w.shape[3]
        sh, sw = o["stride_h"], o["stride_w"]
        y = F.conv_transpose2d(x, w, b, (sh, sw))  # full size: (in - 1) * stride + kernel
        if o["output_hw"] is not None:
            out_h, out_w = o["output_hw"]
        elif o["padding"] == _PADDING_SAME:
            out_h, out_w = x.shape[2] * sh, x.shape[3] * sw
        else:
            out_h, out_w = y.shape[2], y.shape[3]
        top = left = 0
        if o["padding"] == _PADDING_SAME:  # crop as TFLite pads: the extra row/column after
            top = max((x.shape[2] - 1) * sh + kh - out_h, 0) // 2
            left = max((x.shape[3] - 1) * sw + kw - out_w, 0) // 2
        y = y[:, :, top : top + out_h, left : left + out_w]
        return _activation(y, o["activation"])

    def _run_FULLY_CONNECTED(self, args, o):
        x, w, b = args
        x = _nhwc(x)
        if not o["keep_num_dims"]:  # TFLite flattens everything but the last axis
            x = x.reshape(-1, w.shape[1])
        return _nchw(_activation(F.linear(x, w, b), o["activation"]))

    def _broadcast(self, args, o):
        """Bring run-time operands of lower rank to the NCHW layout of the output."""
        out = []
        for x, r in zip(args, o["ranks"]):
            if o["rank"] == 4 and r < 4 and isinstance(x, torch.Tensor) and x.dim() == r:
                x = x.reshape((1,) * (4 - r) + tuple(x.shape)).permute(0, 3, 1, 2)
            out.append(x)
        return out

    def _run_ADD(self, args, o):
        a, b = self._broadcast(args, o)
        return _activation(a + b, o["activation"])

    def _run_SUB(self, args, o):
        a, b = self._broadcast(args, o)
        return _activation(a - b, o["activation"])

    def _run_MUL(self, args, o):
        a, b = self._broadcast(args, o)
        return _activation(a * b, o["activation"])

    def _run_DIV(self, args, o):
        a, b = self._broadcast(args, o)
        return _activation(a / b, o["activation"])

    def _run_PRELU(self, args, o):
        x, alpha = self._broadcast(args, o)
        if (isinstance(alpha, torch.Tensor) and x.dim() >= 2 and alpha.dim() == x.dim()
                and alpha.numel() == x.shape[1] and alpha.shape[1] == x.shape[1]):
            # one slope per channel (the usual case): the fused op, whose backward is far
            # cheaper than that of the select below; the same values (x >= 0 ? x : a x)
            return F.prelu(x, alpha.reshape(-1).to(x.dtype))
        return torch.where(x >= 0, x, x * alpha)

    def _run_RELU(self, args, o):
        return F.relu(args[0])

    def _run_RELU6(self, args, o):
        return F.relu6(args[0])

    def _run_RELU_N1_TO_1(self, args, o):
        return torch.clamp(args[0], -1.0, 1.0)

    def _run_LEAKY_RELU(self, args, o):
        return F.leaky_relu(args[0], o["alpha"])

    def _run_LOGISTIC(self, args, o):
        return torch.sigmoid(args[0])

    def _run_TANH(self, args, o):
        return torch.tanh(args[0])

    def _run_HARD_SWISH(self, args, o):
        return F.hardswish(args[0])

    def _run_DEQUANTIZE(self, args, o):
        return args[0].to(self.dtype)

    def _pool_padding(self, x, o) -> tuple[int, int, int, int]:
        if o["padding"] != _PADDING_SAME:
            return (0, 0, 0, 0)
        top, bottom = _same_padding(x.shape[2], o["filter_h"], o["stride_h"])
        left, right = _same_padding(x.shape[3], o["filter_w"], o["stride_w"])
        return (left, right, top, bottom)

    def _run_MAX_POOL_2D(self, args, o):
        x = args[0]
        pads = self._pool_padding(x, o)
        if any(pads):
            x = F.pad(x, pads, value=float("-inf"))
        y = F.max_pool2d(x, (o["filter_h"], o["filter_w"]), (o["stride_h"], o["stride_w"]))
        return _activation(y, o["activation"])

    def _run_AVERAGE_POOL_2D(self, args, o):
        x = args[0]
        kernel, stride = (o["filter_h"], o["filter_w"]), (o["stride_h"], o["stride_w"])
        pads = self._pool_padding(x, o)
        if not any(pads):
            y = F.avg_pool2d(x, kernel, stride)
        else:  # TFLite averages over the real elements only
            ones = torch.ones_like(x[:1, :1])
            y = F.avg_pool2d(F.pad(x, pads), kernel, stride) / F.avg_pool2d(
                F.pad(ones, pads), kernel, stride
            )
        return _activation(y, o["activation"])

    def _run_PAD(self, args, o):
        return F.pad(args[0], o["pads"], value=o["value"])

    def _run_RESHAPE(self, args, o):
        x = _nhwc(args[0])
        shape = list(o["out_shape"])
        if shape and tuple(shape[:1]) == tuple(o["in_batch"]):
            shape[0] = x.shape[0]  # the batch axis stays free
        return _nchw(x.reshape(shape))

    def _run_CONCATENATION(self, args, o):
        return _activation(torch.cat(args, dim=o["axis"]), o["activation"])

    def _run_RESIZE_BILINEAR(self, args, o):
        x = args[0]
        size = o["size"]
        if o["align_corners"]:
            return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        if o["half_pixel_centers"]:
            # torch's align_corners=False is the half-pixel convention, with source
            # coordinates below zero clamped to zero, as in TFLite.
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return _resize_bilinear_legacy(x, size)


def _resize_bilinear_legacy(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TFLite's default bilinear resize: source = out * (in / out), no half-pixel shift."""

    def axis(in_size: int, out_size: int):
        position = torch.arange(out_size, device=x.device, dtype=torch.float32) * (
            in_size / out_size
        )
        low = position.floor().long().clamp(max=in_size - 1)
        high = (low + 1).clamp(max=in_size - 1)
        return low, high, (position - low.float()).to(x.dtype)

    top, bottom, wy = axis(x.shape[2], size[0])
    left, right, wx = axis(x.shape[3], size[1])
    rows = x[:, :, top] * (1 - wy)[:, None] + x[:, :, bottom] * wy[:, None]
    return rows[:, :, :, left] * (1 - wx) + rows[:, :, :, right] * wx


def load_tflite(source: str | Path | bytes, outputs: list[str] | None = None) -> TFLiteModule:
    """Read a ``.tflite`` file and build its :class:`TFLiteModule` (float32, CPU)."""
    return TFLiteModule(read_graph(source), outputs=outputs)
