"""``vdf-stream filters``: every filter found (built-in and from other installed packages)
with its options."""

from __future__ import annotations

from ..errors import EXIT_OK, VdfError
from .common import add_common_options


def add_parser(commands) -> None:
    filters = commands.add_parser("filters", help="list the filters and their options",
                                  description="List every filter (built-in and from other "
                                              "installed packages) with its options.")
    add_common_options(filters)


def run_filters_command(args) -> int:
    from ..pipeline.filter import available_filters, describe_option, load_filter_class, option_fields

    for name in available_filters():
        try:
            cls = load_filter_class(name)
        except VdfError as error:
            print(f"{name}\n    (cannot be loaded: {error})")
            continue
        print(f"{name}: {cls.description}")
        print(f"    formats: {', '.join(cls.formats)}")
        fields = option_fields(cls.Options)
        if not fields:
            print("    options: none")
        for field in fields:
            print(f"    {describe_option(field, cls.Options)}")
    return EXIT_OK
