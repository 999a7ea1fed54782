"""Read a TensorFlow Lite flatbuffer into a :class:`GraphSpec` (the first half of
:mod:`vdf_stream.models.tflite`, which runs it).

:func:`read_graph` parses the flatbuffer (with the ``tflite`` schema package): tensors,
operators in execution order, and the constant tensors as numpy arrays. Weights stored as
float16 (or int8 / uint8 / int16 with scales and zero points) behind ``DEQUANTIZE``
operators are restored to float32 here and the ``DEQUANTIZE`` operators are dropped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AssetError


class ModelConversionError(AssetError):
    """A TFLite file uses something this converter does not support, or is malformed."""


# Enumerations of the TFLite schema (tflite/schema.fbs), kept as plain numbers.
_PADDING_SAME = 0
_PADDING_VALID = 1
_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_TENSOR_TYPES = {
    0: np.float32,
    1: np.float16,
    2: np.int32,
    3: np.uint8,
    4: np.int64,
    6: np.bool_,
    7: np.int16,
    9: np.int8,
    10: np.float64,
}
_CUSTOM_OPERATOR = 32  # BuiltinOperator.CUSTOM

# MediaPipe's TfLitePadding for custom operators: 0 unknown, 1 SAME, 2 VALID.
_CUSTOM_PADDING = {1: _PADDING_SAME, 2: _PADDING_VALID}

# NHWC axis -> NCHW axis, for rank-4 tensors.
_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the graph as the file describes it (TFLite axis order, NHWC)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy name of the stored type: "float32", "float16", "int32", ...


@dataclass(frozen=True)
class OperatorSpec:
    """One operator: its kind ("CONV_2D", or the custom code), tensor indices, options.

    Input index -1 marks an optional input that is absent (e.g. a missing bias).
    """

    kind: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class GraphSpec:
    """A parsed TFLite subgraph: what :class:`TFLiteModule` needs to run it."""

    tensors: list[TensorSpec]
    operators: list[OperatorSpec]  # execution (topological) order, DEQUANTIZE folded
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    constants: dict[int, np.ndarray]  # float constants already restored to float32

    def tensor_index(self, name: str) -> int:
        """The index of the tensor called ``name``."""
        for tensor in self.tensors:
            if tensor.name == name:
                return tensor.index
        raise KeyError(f"no tensor named {name!r} in the graph")

    def operator_kinds(self) -> set[str]:
        return {op.kind for op in self.operators}


# --------------------------------------------------------------------------------------
# Reading the flatbuffer


def read_graph(source: str | Path | bytes) -> GraphSpec:
    """Parse a ``.tflite`` file (a path or its bytes) into a :class:`GraphSpec`.

    Raises:
        ModelConversionError: the file is not a single-subgraph float model, or uses an
            operator this module cannot run.
    """
    import tflite  # the flatbuffer schema; only needed while reading

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        graph = model.Subgraphs(0)
    except Exception as error:  # flatbuffers raises assorted errors on garbage
        raise ModelConversionError(f"not a readable TFLite model: {error}") from None
    if model.SubgraphsLength() != 1:
        raise ModelConversionError(
            f"expected one subgraph, the model has {model.SubgraphsLength()}"
        )
    builtin_names = {
        value: name
        for name, value in vars(tflite.BuiltinOperator).items()
        if not name.startswith("_")
    }

    tensors: list[TensorSpec] = []
    raw_constants: dict[int, np.ndarray] = {}
    quantization: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
    for index in range(graph.TensorsLength()):
        tensor = graph.Tensors(index)
        numpy_type = _TENSOR_TYPES.get(tensor.Type())
        if numpy_type is None:
            raise ModelConversionError(
                f"tensor {tensor.Name().decode()!r} has unsupported type {tensor.Type()}"
            )
        shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        spec = TensorSpec(index, tensor.Name().decode(), shape, np.dtype(numpy_type).name)
        tensors.append(spec)
        payload = _buffer_bytes(data, model.Buffers(tensor.Buffer()))
        if payload is not None:
            array = np.frombuffer(payload, dtype=numpy_type).reshape(shape).copy()
            raw_constants[index] = array
        parameters = tensor.Quantization()
        if parameters is not None and parameters.ScaleLength():
            quantization[index] = (
                parameters.ScaleAsNumpy().astype(np.float32),
                parameters.ZeroPointAsNumpy().astype(np.int64)
                if parameters.ZeroPointLength()
                else np.zeros(parameters.ScaleLength(), np.int64),
                parameters.QuantizedDimension(),
            )

    # Every float (or quantised) constant restored to float32; integer constants kept.
    constants: dict[int, np.ndarray] = {}
    for index, array in raw_constants.items():
        if index in quantization and array.dtype.kind in "iu":
            constants[index] = _dequantize(array, *quantization[index])
        elif array.dtype.kind == "f":
            constants[index] = array.astype(np.float32)
        else:
            constants[index] = array

    operators: list[OperatorSpec] = []
    for position in range(graph.OperatorsLength()):
        operator = graph.Operators(position)
        code = model.OperatorCodes(operator.OpcodeIndex())
        number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        inputs = tuple(int(i) for i in operator.InputsAsNumpy()) if operator.InputsLength() else ()
        outputs = tuple(int(i) for i in operator.OutputsAsNumpy())
        if number == _CUSTOM_OPERATOR:
            kind = code.CustomCode().decode()
            custom = b""
            if operator.CustomOptionsLength():
                custom = bytes(operator.CustomOptionsAsNumpy())
            options = _custom_options(kind, custom)
        else:
            kind = builtin_names.get(number, f"BUILTIN_{number}")
            options = _builtin_options(tflite, kind, operator)
        if kind == "DEQUANTIZE" and inputs[0] in constants:
            constants[outputs[0]] = constants[inputs[0]].astype(np.float32)
            continue  # folded: the output is a constant now
        if kind not in _SUPPORTED:
            raise ModelConversionError(
                f"operator {kind} (#{position}) is not supported; supported: "
                + ", ".join(sorted(_SUPPORTED))
            )
        operators.append(OperatorSpec(kind, inputs, outputs, options))

    inputs = tuple(int(i) for i in graph.InputsAsNumpy())
    outputs = tuple(int(i) for i in graph.OutputsAsNumpy())
    for index in inputs:
        if tensors[index].dtype != "float32":
            raise ModelConversionError(
                f"input {tensors[index].name!r} is {tensors[index].dtype}; only float32 "
                "inputs are supported (fully quantised models are not)"
            )
    operators = _topological_order(operators, set(inputs) | set(constants))
    return GraphSpec(tensors, operators, inputs, outputs, constants)


def _buffer_bytes(data: bytes, buffer) -> bytes | None:
    """The bytes of a constant tensor, or None for a tensor computed at run time."""
    if buffer is None:
        return None
    offset = buffer.Offset() if hasattr(buffer, "Offset") else 0
    if offset > 1:  # large models keep buffers after the flatbuffer
        return data[offset : offset + buffer.Size()]
    if buffer.DataLength() == 0:
        return None
    return buffer.DataAsNumpy().tobytes()


def _dequantize(
    values: np.ndarray, scales: np.ndarray, zero_points: np.ndarray, axis: int
) -> np.ndarray:
    """``(q - zero_point) * scale``, per tensor or per channel along ``axis``."""
    values = values.astype(np.float32)
    if scales.size == 1:
        return ((values - float(zero_points.reshape(-1)[0])) * float(scales[0])).astype(
            np.float32
        )
    shape = [1] * values.ndim
    shape[axis] = scales.size
    zero = zero_points.reshape(shape).astype(np.float32) if zero_points.size > 1 else 0.0
    return ((values - zero) * scales.reshape(shape)).astype(np.float32)


# Option tables: operator kind -> (options class name, [(getter, key)]).
_OPTION_FIELDS: dict[str, tuple[str, list[tuple[str, str]]]] = {}
_CONV_FIELDS = [
    ("Padding", "padding"),
    ("StrideH", "stride_h"),
    ("StrideW", "stride_w"),
    ("DilationHFactor", "dilation_h"),
    ("DilationWFactor", "dilation_w"),
    ("FusedActivationFunction", "activation"),
]
_POOL_FIELDS = [
    ("Padding", "padding"),
    ("StrideH", "stride_h"),
    ("StrideW", "stride_w"),
    ("FilterHeight", "filter_h"),
    ("FilterWidth", "filter_w"),
    ("FusedActivationFunction", "activation"),
]
_ACTIVATION_FIELD = [("FusedActivationFunction", "activation")]
_OPTION_FIELDS.update(
    {
        "CONV_2D": ("Conv2DOptions", _CONV_FIELDS),
        "DEPTHWISE_CONV_2D": (
            "DepthwiseConv2DOptions",
            _CONV_FIELDS + [("DepthMultiplier", "depth_multiplier")],
        ),
        "TRANSPOSE_CONV": (
            "TransposeConvOptions",
            [("Padding", "padding"), ("StrideH", "stride_h"), ("StrideW", "stride_w")]
            + _ACTIVATION_FIELD,
        ),
        "FULLY_CONNECTED": (
            "FullyConnectedOptions",
            _ACTIVATION_FIELD
            + [("KeepNumDims", "keep_num_dims"), ("WeightsFormat", "weights_format")],
        ),
        "ADD": ("AddOptions", _ACTIVATION_FIELD),
        "SUB": ("SubOptions", _ACTIVATION_FIELD),
        "MUL": ("MulOptions", _ACTIVATION_FIELD),
        "DIV": ("DivOptions", _ACTIVATION_FIELD),
        "CONCATENATION": ("ConcatenationOptions", [("Axis", "axis")] + _ACTIVATION_FIELD),
        "MAX_POOL_2D": ("Pool2DOptions", _POOL_FIELDS),
        "AVERAGE_POOL_2D": ("Pool2DOptions", _POOL_FIELDS),
        "RESIZE_BILINEAR": (
            "ResizeBilinearOptions",
            [("AlignCorners", "align_corners"), ("HalfPixelCenters", "half_pixel_centers")],
        ),
        "LEAKY_RELU": ("LeakyReluOptions", [("Alpha", "alpha")]),
    }
)


_OPTION_DEFAULTS = {
    "activation": 0,
    "dilation_h": 1,
    "dilation_w": 1,
    "depth_multiplier": 1,
    "keep_num_dims": False,
    "weights_format": 0,
    "align_corners": False,
    "half_pixel_centers": False,
}


def _builtin_options(tflite, kind: str, operator) -> dict[str, Any]:
    if kind not in _OPTION_FIELDS:
        return {}
    class_name, fields = _OPTION_FIELDS[kind]
    table = operator.BuiltinOptions()
    if table is None:  # no options table: only fields with a neutral default may be missing
        missing = [key for _, key in fields if key not in _OPTION_DEFAULTS]
        if missing:
            raise ModelConversionError(f"{kind} has no options ({', '.join(missing)})")
        return {key: _OPTION_DEFAULTS[key] for _, key in fields}
    options = getattr(tflite, class_name)()
    options.Init(table.Bytes, table.Pos)
    return {key: getattr(options, getter)() for getter, key in fields}


def _custom_options(kind: str, data: bytes) -> dict[str, Any]:
    if kind == "Convolution2DTransposeBias":
        # MediaPipe stores a TfLiteTransposeConvParams struct: padding, stride_w, stride_h.
        if len(data) < 12:
            raise ModelConversionError(
                f"{kind}: custom options are {len(data)} bytes, expected at least 12"
            )
        padding, stride_w, stride_h = struct.unpack_from("<3i", data)
        if padding not in _CUSTOM_PADDING:
            raise ModelConversionError(f"{kind}: unknown padding {padding}")
        return {
            "padding": _CUSTOM_PADDING[padding],
            "stride_h": stride_h,
            "stride_w": stride_w,
            "activation": 0,
        }
    return {}


def _topological_order(
    operators: list[OperatorSpec], available: set[int]
) -> list[OperatorSpec]:
    """Operators in an order where each runs after its inputs exist (files are usually
    already in that order, which is kept)."""
    ready = set(available) | {-1}
    pending = list(operators)
    ordered: list[OperatorSpec] = []
    while pending:
        remaining = []
        for op in pending:
            if all(i in ready for i in op.inputs):
                ordered.append(op)
                ready.update(op.outputs)
            else:
                remaining.append(op)
        if len(remaining) == len(pending):
            names = ", ".join(op.kind for op in remaining[:5])
            raise ModelConversionError(f"the graph has a cycle or a missing input at {names}")
        pending = remaining
    return ordered


_UNARY = ("RELU", "RELU6", "RELU_N1_TO_1", "LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU")

_SUPPORTED = {
    "ADD", "SUB", "MUL", "DIV", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV",
    "FULLY_CONNECTED", "MAX_POOL_2D", "AVERAGE_POOL_2D", "PAD", "PADV2", "RESHAPE",
    "CONCATENATION", "RESIZE_BILINEAR", "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU",
    "PRELU", "LOGISTIC", "TANH", "HARD_SWISH", "DEQUANTIZE", "Convolution2DTransposeBias",
}  # fmt: skip
"""Operator kinds :func:`read_graph` accepts (builtin names and custom codes)."""
