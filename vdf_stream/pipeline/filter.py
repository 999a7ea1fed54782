"""The filter interface, the filter registry and the filter-graph parser.

A filter, in the spirit of an FFmpeg ``vf_*.c`` or a GStreamer element:

* declares its ``name``, a one-line ``description``, typed ``Options`` (a dataclass whose
  fields carry ``help`` in their metadata) and the frame ``formats`` it accepts, most
  preferred first;
* is negotiated once: :meth:`Filter.setup` receives the description of the incoming
  stream and the device and returns the description of what it will produce;
* then :meth:`Filter.process` takes a batch and returns a batch, :meth:`Filter.flush`
  returns what it still holds at the end, and :meth:`Filter.close` releases resources.

Filters are found through the entry-point group ``vdf_stream.filters`` (``name = module:Class``),
so another package can add its own by declaring one in its packaging metadata. Registration
is declared, never a side effect of importing.

The graph syntax is FFmpeg's for a linear chain: ``name=opt=value:opt=value,name2,...``;
positional values (``scale=1280:720``) fill the options in declaration order; a backslash
escapes ``,`` ``:`` ``=`` and ``\\`` inside a value.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, ClassVar, Literal, get_args, get_origin

import torch

from ..errors import UsageError
from ..media.frames import Frames, VideoInfo

ENTRY_POINT_GROUP = "vdf_stream.filters"

# Used when the package runs from a source tree that was never installed (no entry points).
_BUILTIN = {
    "null": "vdf_stream.filters.null:NullFilter",
    "scale": "vdf_stream.filters.scale:ScaleFilter",
    "jpeg": "vdf_stream.filters.jpeg:JpegFilter",
    "gaussian_blur": "vdf_stream.filters.gaussian_blur:GaussianBlurFilter",
    "median": "vdf_stream.filters.median:MedianFilter",
    "noise": "vdf_stream.filters.noise:NoiseFilter",
    "vdf": "vdf_stream.filters.vdf:VdfFilter",
}


@dataclass
class NoOptions:
    """A filter that takes no options."""


class Filter:
    """Base class of every filter. Subclasses set the class attributes and override methods."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    formats: ClassVar[tuple[str, ...]] = ("rgbf32",)

    def __init__(self, options: Any | None = None):
        self.options = options if options is not None else self.Options()
        self.input_info: VideoInfo | None = None
        self.output_info: VideoInfo | None = None
        self.device = torch.device("cpu")
        # Set by the engine before setup: the caller collects what flush() returns at the
        # end, so process() may return fewer frames than it took (in order) and hold the
        # rest a while. Callers that need a batch back whole (the Python API, eval) leave
        # it False.
        self.streaming = False
        # Set by the session: where a filter's one-line notes go (stderr when left None).
        self.warn: Callable[[str], None] | None = None

    def say(self, message: str) -> None:
        """A one-line note for the user: to the session's ``warn``, else stderr."""
        if self.warn is not None:
            self.warn(message)
        else:
            print(message, file=sys.stderr)

    def setup(self, info: VideoInfo, device: torch.device) -> VideoInfo:
        """Negotiate once with the incoming stream; return the outgoing stream's description.

        Checks the options (their ``validate()``, when they have one: options built in
        Python never went through the graph parser). Raise
        :class:`~vdf_stream.errors.UsageError` when the options do not fit the stream.
        """
        validate = getattr(self.options, "validate", None)
        if callable(validate):
            try:
                validate()
            except ValueError as error:
                raise UsageError(f"{self.name}: {error}") from None
        self.input_info = info
        self.output_info = info
        self.device = device
        return info

    def process(self, frames: Frames) -> Frames:
        """Transform one batch (in one of ``formats``); the input batch is not modified.

        Returns the batch transformed, or, when ``streaming``, the frames ready so far in
        order (possibly none); :meth:`flush` returns the rest."""
        raise NotImplementedError

    def flush(self) -> Frames | None:
        """Return frames still held at the end of the stream (most filters hold none)."""
        return None

    def close(self) -> None:
        """Release resources. Called once, also after an error."""

    def __repr__(self) -> str:
        return f"{self.name}({self.options})"


# ---------------------------------------------------------------------------------------
# Registry


def available_filters() -> dict[str, str]:
    """Map each known filter name to its ``module:Class`` address."""
    found = dict(_BUILTIN)
    try:
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            found[entry.name] = entry.value
    except Exception:  # broken third-party metadata must not break the built-ins
        pass
    return dict(sorted(found.items()))


def load_filter_class(name: str) -> type[Filter]:
    filters = available_filters()
    if name not in filters:
        raise UsageError(f"unknown filter {name!r}; available filters: {', '.join(filters)}")
    module_name, _, attribute = filters[name].partition(":")
    import importlib

    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attribute)
    except (ImportError, AttributeError) as error:
        raise UsageError(f"filter {name!r} could not be loaded from {filters[name]}: {error}")
    if not (isinstance(cls, type) and issubclass(cls, Filter)):
        raise UsageError(f"filter {name!r} ({filters[name]}) is not a vdf_stream Filter")
    return cls


# ---------------------------------------------------------------------------------------
# Options


def option_fields(options_class: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(options_class) if f.init]


def describe_option(option: dataclasses.Field, options_class: type, width: int = 100) -> str:
    """The entry of ``vdf-stream filters`` for one option: ``name=default (type)`` and its
    help, wrapped to ``width`` columns (continuation lines indented by 8, the caller indents
    the first by 4). The default is shown as a user would type it: the field's ``shown``
    metadata when it has one (``8/255``, ``the preset's``), else ``on``/``off``, ``none``."""
    import textwrap

    hints = typing.get_type_hints(options_class)
    kind = _type_name(hints[option.name])
    if "shown" in option.metadata:
        default = option.metadata["shown"]
    elif option.default is not dataclasses.MISSING:
        default = _shown(option.default)
    elif option.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        default = _shown(option.default_factory())  # type: ignore[misc]
    else:
        default = "(required)"
    head = f"{option.name}={default}" if " " not in default else f"{option.name}: {default}"
    text = f"{head}  ({kind}) {option.metadata.get('help', '')}".rstrip()
    lines = textwrap.wrap(text, width=width, initial_indent=" " * 4, subsequent_indent=" " * 8)
    return "\n".join(lines)[4:]


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _type_name(hint: Any) -> str:
    if get_origin(hint) is Literal:
        return "|".join(str(v) for v in get_args(hint))
    if get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type_name(a) for a in get_args(hint) if a is not type(None))
    return getattr(hint, "__name__", str(hint))


def _convert_value(filter_name: str, key: str, text: str, hint: Any) -> Any:
    args = get_args(hint)
    origin = get_origin(hint)
    if origin is Literal:
        for choice in args:
            if str(choice) == text:
                return choice
        raise UsageError(
            f"{filter_name}: option {key}={text!r} is not one of {', '.join(map(str, args))}"
        )
    if origin is typing.Union or (origin is not None and type(None) in args):
        last_error: UsageError | None = None
        for candidate in (a for a in args if a is not type(None)):
            try:
                return _convert_value(filter_name, key, text, candidate)
            except UsageError as error:
                last_error = error
        assert last_error is not None
        raise last_error
    try:
        if hint is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if hint is int:
            return int(text)
        if hint is float:
            if "/" in text:  # allow 8/255
                numerator, denominator = text.split("/", 1)
                return float(numerator) / float(denominator)
            return float(text)
        if hint is str:
            return text
    except ValueError:
        raise UsageError(
            f"{filter_name}: option {key}={text!r} is not a valid {_type_name(hint)}"
        ) from None
    raise UsageError(f"{filter_name}: option {key} has an unsupported type {hint!r}")


def parse_options(cls: type[Filter], arguments: str | None,
                  defaults: dict[str, Any] | None = None) -> Any:
    """Build ``cls.Options`` from ``opt=value:opt=value`` text (positional values allowed);
    ``defaults`` gives values to the options the text does not set."""
    fields = option_fields(cls.Options)
    hints = typing.get_type_hints(cls.Options)
    names = [f.name for f in fields]
    values: dict[str, Any] = {}
    if arguments:
        position = 0
        for item in _split_escaped(arguments, ":"):
            key, separator, text = _partition_escaped(item, "=")
            if not separator:
                if position >= len(names):
                    raise UsageError(
                        f"{cls.name}: too many values in {arguments!r}; options: "
                        f"{', '.join(names) or 'none'}"
                    )
                key, text = names[position], key
                position += 1
            key = key.strip()
            if key not in names:
                raise UsageError(
                    f"{cls.name}: unknown option {key!r}; options: {', '.join(names) or 'none'}"
                )
            if key in values:
                raise UsageError(f"{cls.name}: option {key!r} is given twice")
            values[key] = _convert_value(cls.name, key, _unescape(text), hints[key])
    try:
        options = cls.Options(**{**(defaults or {}), **values})
    except TypeError as error:
        raise UsageError(f"{cls.name}: {error}") from None
    validate = getattr(options, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as error:
            raise UsageError(f"{cls.name}: {error}") from None
    return options


# ---------------------------------------------------------------------------------------
# Graph


def _split_escaped(text: str, separator: str) -> list[str]:
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def _partition_escaped(text: str, separator: str) -> tuple[str, str, str]:
    escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            return text[:index], separator, text[index + 1 :]
    return text, "", ""


def _unescape(text: str) -> str:
    out, escaped = [], False
    for char in text:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            out.append(char)
    return "".join(out)


@dataclass(frozen=True)
class FilterSpec:
    name: str
    arguments: str | None


def parse_graph(text: str) -> list[FilterSpec]:
    """Split ``"scale=w=1280:h=720,jpeg=quality=75"`` into filter names and argument text."""
    if text is None or not text.strip():
        raise UsageError("the filter graph is empty; use --vf null to pass frames through")
    specs = []
    for chunk in _split_escaped(text, ","):
        chunk = chunk.strip()
        if not chunk:
            raise UsageError(f"empty filter in graph {text!r} (two commas in a row?)")
        name, separator, arguments = _partition_escaped(chunk, "=")
        specs.append(FilterSpec(name.strip(), arguments if separator else None))
    return specs


def build_filters(text: str, defaults: dict[str, dict[str, Any]] | None = None) -> list[Filter]:
    """Parse a graph and instantiate its filters with validated options. ``defaults``: per
    filter name, values of the options its text does not set (``{"vdf": {"seed": 3}}``)."""
    filters = []
    for spec in parse_graph(text):
        cls = load_filter_class(spec.name)
        filters.append(cls(parse_options(cls, spec.arguments, (defaults or {}).get(spec.name))))
    return filters
