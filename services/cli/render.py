"""Output for sectorctl: aligned tables, human sizes, a text capacity bar for people, and one
JSON document per command for scripts (protobuf messages via MessageToDict with the proto field
names, so keys are stable and match the .proto files)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def size(n: int | float) -> str:
    """1536 -> '1.5 KiB'; exact powers print without decimals ('2 KiB')."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def bar(used: float, total: float, width: int = 20) -> str:
    """A text bar of used/total, e.g. '[#####.........] 25%'; '[?]' when total is unknown."""
    if total <= 0:
        return "[" + "?" * width + "]   -"
    fraction = min(max(used / total, 0.0), 1.0)
    filled = round(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {fraction * 100:3.0f}%"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.ljust(widths[i]) if i < len(row) - 1 else c for i, c in enumerate(row)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def enum_name(prefix: str, name: str) -> str:
    """'TASK_TYPE_PRE_COMMIT_1' with prefix 'TASK_TYPE_' -> 'PRE_COMMIT_1'."""
    return name[len(prefix) :] if name.startswith(prefix) else name


def message_dict(message: Message) -> dict[str, Any]:
    """A message as a JSON-ready dict: proto field names, every field present (zero values
    included), enums by name, bytes base64, 64-bit integers as strings (the proto3 JSON mapping)."""
    result: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return result


def emit_json(document: object) -> None:
    json.dump(document, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def emit(text: str) -> None:
    print(text)
