"""Hypothesis strategies built from protobuf descriptors, so every RPC's input message (and any
message added later) is fuzzed without hand-written generators.

Each field is set or left unset at random; values lean on the inputs that break servers: integer
boundaries (0, -1, int64 min/max, uint64 max), unknown enum numbers, strings that look like paths
(`../../etc/passwd`, `/etc/passwd`, NUL bytes) or are very long or odd unicode, bytes up to 1 MiB
(well under the 64 MiB message cap), nested messages (timestamps and durations included) down to
a depth limit, repeated fields and oneofs (at most one member set, as on the wire).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

FD = FieldDescriptor
MAX_DEPTH = 4

# Path-like strings every string field gets tried with (ids, names, paths, URLs alike).
PATHLIKE = [
    "../../etc/passwd",
    "/etc/passwd",
    "/tmp/etc/passwd",
    "..",
    "../",
    "./",
    "/",
    "",
    "..\\..\\windows\\system32",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "sealed/../../../etc/passwd",
    "s-t01000-1/../../x",
    "etc/passwd\x00.png",
    "\x00",
    "file:///etc/passwd",
    "http://127.0.0.1:1/x",
    "00000000-0000-0000-0000-000000000000",
]
_LONG = ["x" * 4096, "é" * 20_000, "/" + "a/" * 2000]
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_STRINGS = st.one_of(st.sampled_from(PATHLIKE), st.sampled_from(_LONG), _TEXT)
_BYTES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"\x00" * 32, b"\xff" * 32]),
    # Large payloads without spending hypothesis' entropy on every byte.
    st.integers(0, 1 << 20).map(lambda n: bytes([0xA5]) * n),
)


_EDGES = [0, 1, -1, 127, 128, 2048, 2**31 - 1, -(2**31), 2**32 - 1, 2**63 - 1, -(2**63), 2**63, 2**64 - 1]


def _ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Boundaries of the type and of the domain (sizes, padding), small values, anything."""
    edges = [e for e in _EDGES if lo <= e <= hi]
    return st.one_of(
        st.sampled_from(edges), st.integers(-1000, 1000).filter(lambda v: lo <= v <= hi), st.integers(lo, hi)
    )


_INT32 = _ints(-(2**31), 2**31 - 1)
_INT64 = _ints(-(2**63), 2**63 - 1)
_UINT32 = _ints(0, 2**32 - 1)
_UINT64 = _ints(0, 2**64 - 1)
_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FD.TYPE_INT32: _INT32,
    FD.TYPE_SINT32: _INT32,
    FD.TYPE_SFIXED32: _INT32,
    FD.TYPE_INT64: _INT64,
    FD.TYPE_SINT64: _INT64,
    FD.TYPE_SFIXED64: _INT64,
    FD.TYPE_UINT32: _UINT32,
    FD.TYPE_FIXED32: _UINT32,
    FD.TYPE_UINT64: _UINT64,
    FD.TYPE_FIXED64: _UINT64,
    FD.TYPE_BOOL: st.booleans(),
    FD.TYPE_DOUBLE: st.floats(allow_nan=True, allow_infinity=True),
    FD.TYPE_FLOAT: st.floats(allow_nan=True, allow_infinity=True, width=32),
    FD.TYPE_STRING: _STRINGS,
    FD.TYPE_BYTES: _BYTES,
}


def _enum(field: FieldDescriptor) -> st.SearchStrategy[int]:
    known = [v.number for v in field.enum_type.values]
    return st.one_of(
        st.sampled_from(known), st.sampled_from([-1, max(known) + 1, 2**31 - 1]), st.integers(-(2**31), 2**31 - 1)
    )


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FD.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    if field.type == FD.TYPE_ENUM:
        return _enum(field)
    return _SCALARS[field.type]


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


@st.composite
def _message(draw: st.DrawFn, descriptor: Descriptor, depth: int) -> Message:
    msg = GetMessageClass(descriptor)()
    if depth > MAX_DEPTH:
        return msg
    real_oneofs = [
        o for o in descriptor.oneofs if not (len(o.fields) == 1 and o.fields[0].has_presence and o.name.startswith("_"))
    ]
    chosen = {o.name: draw(st.sampled_from([None, *o.fields])) for o in real_oneofs}
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None and oneof.name in chosen:
            if chosen[oneof.name] is not field:
                continue
        elif not draw(st.booleans()):
            continue
        if _is_repeated(field):
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                key_field, value_field = (
                    field.message_type.fields_by_name["key"],
                    field.message_type.fields_by_name["value"],
                )
                entries = draw(st.dictionaries(_value(key_field, depth), _value(value_field, depth), max_size=3))
                target = getattr(msg, field.name)
                for k, v in entries.items():
                    if value_field.type == FD.TYPE_MESSAGE:
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
                continue
            values = draw(st.lists(_value(field, depth), max_size=3 if depth < 2 else 1))
            if field.type == FD.TYPE_MESSAGE:
                getattr(msg, field.name).extend(values)
            else:
                getattr(msg, field.name)[:] = values
        elif field.type == FD.TYPE_MESSAGE:
            getattr(msg, field.name).CopyFrom(draw(_value(field, depth)))
        else:
            setattr(msg, field.name, draw(_value(field, depth)))
    return msg


_CACHE: dict[tuple[str, int], st.SearchStrategy[Message]] = {}


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Random instances of the message type `descriptor` (nested types down to MAX_DEPTH)."""
    key = (descriptor.full_name, depth)
    if key not in _CACHE:
        _CACHE[key] = st.deferred(lambda: _message(descriptor, depth))
    return _CACHE[key]
