"""Hypothesis strategies for any protobuf message of the wire contract, hostile ones first.

A message is built field by field from its descriptor: strings that name real things
(the node, a job the fuzzer made, a data root) next to ``..``, NUL, huge and
right-to-left ones; integers at the edges of their type; enum numbers no enum
names; nested messages a few levels deep; bytes fields that carry a message
(``ProposeRequest.commands``, a Raft entry's data) filled with that message's bytes.
Mutations then flip, cut, repeat and splice the encoded bytes.

One thing is never left to chance: a job's command. A node given a generated job
may run it, so every ``JobSpec`` built here runs something harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from murmur.v1 import control_pb2, types_pb2

SAFE_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("true",),
    ("echo", "fuzz"),
    ("sleep", "0.1"),
    ("/nonexistent/fuzz-program",),
    (),
)
"""What a generated job may run: nothing that could harm the machine running the fuzzer."""

HUGE_SIZES = (1_000, 70_000, 200_000, 1_100_000)
"""Lengths of the long strings and lists: around the field caps and the total caps."""

_INT_EDGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), -1, 0, 1, 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), -1, 0, 1, 2**53 + 1, 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 1, 2, 255, 2**31, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 1, 2, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1),
}
_INT_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}

_HOSTILE_STRINGS = (
    "",
    " ",
    "default",
    "admin",
    "node-1",
    "..",
    "../../etc/passwd",
    "/",
    "/etc",
    "/etc/shadow",
    "/proc/self/environ",
    "relative/path",
    "\x00",
    "a\x00b",
    "a=b",
    "MURMUR_JOB_ID",
    "CUDA_VISIBLE_DEVICES",
    "murmur.node",
    "\u202eevil",
    "é\u0301",
    "\U0001f600",
    "$(id)",
    "'; DROP TABLE jobs; --",
    "%s%s%n",
    "-1",
    "9" * 40,
    "\n\r\t",
)


class KnownNames:
    """Names the node will recognise: its own, the fuzzer's data roots, and the ids of
    jobs, runs and datasets the fuzzer made (added as answers come back)."""

    def __init__(self, initial: Sequence[str] = ()) -> None:
        self.names: list[str] = list(initial)

    def add(self, name: str) -> None:
        if name and name not in self.names:
            self.names.append(name)
            del self.names[:-200]

    def pick(self, index: int) -> str:
        return self.names[index % len(self.names)] if self.names else ""


def strings(known: KnownNames) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(_HOSTILE_STRINGS),
        st.integers(min_value=0, max_value=1 << 20).map(known.pick),
        st.text(max_size=40),
        st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True),
        st.builds(
            lambda size, text: (text or "a") * (size // max(1, len(text or "a"))),
            st.sampled_from(HUGE_SIZES),
            st.sampled_from(("a", "/x", "é", "\x00")),
        ),
    )


def _ints(cpp_type: int) -> st.SearchStrategy[int]:
    low, high = _INT_RANGES[cpp_type]
    return st.one_of(
        st.sampled_from(_INT_EDGES[cpp_type]), st.integers(min_value=low, max_value=high)
    )


_COMMAND = "__command__"
"""Stands for ``JobSpec.command`` in a generated spec: drawn from `SAFE_COMMANDS` only."""


class MessageStrategies:
    """Strategies for the contract's messages, each built once."""

    def __init__(self, known: KnownNames, *, max_depth: int = 4) -> None:
        self._known = known
        self._max_depth = max_depth
        self._bytes_as: dict[str, Descriptor] = {
            "murmur.v1.ProposeRequest.commands": control_pb2.ControlCommand.DESCRIPTOR,
            "murmur.v1.RaftEntry.data": control_pb2.ControlCommand.DESCRIPTOR,
            "murmur.v1.RaftInstallSnapshot.data": control_pb2.ControlSnapshot.DESCRIPTOR,
        }

    def message(self, descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
        message_class = message_factory.GetMessageClass(descriptor)
        if depth > self._max_depth:
            return st.just(message_class())
        optional = {field.name: self._field(field, depth) for field in descriptor.fields}
        if descriptor.full_name == types_pb2.JobSpec.DESCRIPTOR.full_name:
            optional["command"] = st.sampled_from(SAFE_COMMANDS)

        def build(values: dict[str, Any]) -> Message:
            message = message_class()
            for name, value in values.items():
                _set_field(message, descriptor.fields_by_name[name], value)
            return message

        return st.fixed_dictionaries({}, optional=optional).map(build)

    def _field(self, field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key = self._scalar(field.message_type.fields_by_name["key"], depth)
            value = self._scalar(field.message_type.fields_by_name["value"], depth)
            return st.one_of(
                st.dictionaries(key, value, max_size=4),
                st.sampled_from((65, 1025, 5000)).flatmap(
                    lambda size: st.just({f"K{index}": "v" for index in range(size)})
                ),
            )
        single = self._scalar(field, depth)
        if field.is_repeated:
            many = _small_value(field)
            return st.one_of(
                st.lists(single, max_size=4),
                st.sampled_from((65, 4097, 20_000)).map(lambda size: [many] * size),
            )
        return single

    def _scalar(self, field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            return self.message(field.message_type, depth + 1)
        if field.type == FieldDescriptor.TYPE_STRING:
            return strings(self._known)
        if field.type == FieldDescriptor.TYPE_BYTES:
            plain = st.one_of(st.binary(max_size=64), st.just(b"\x00" * 70_000))
            inner = self._bytes_as.get(field.full_name)
            if inner is None or depth > self._max_depth:
                return plain
            return st.one_of(plain, self.message(inner, depth + 1).map(_encoded))
        if field.type == FieldDescriptor.TYPE_BOOL:
            return st.booleans()
        if field.type == FieldDescriptor.TYPE_ENUM:
            return st.integers(min_value=-2, max_value=12)
        if field.cpp_type in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
            return st.floats(width=64 if field.cpp_type == FieldDescriptor.CPPTYPE_DOUBLE else 32)
        return _ints(field.cpp_type)


def _small_value(field: FieldDescriptor) -> Any:
    """A short value of the field's type, for lists of thousands."""
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_factory.GetMessageClass(field.message_type)()
    if field.type == FieldDescriptor.TYPE_STRING:
        return "x"
    if field.type == FieldDescriptor.TYPE_BYTES:
        return b"x"
    if field.type == FieldDescriptor.TYPE_BOOL:
        return True
    if field.cpp_type in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return 1.0
    return 1


def _encoded(message: Message) -> bytes:
    return message.SerializeToString()


def _set_field(message: Message, field: FieldDescriptor, value: Any) -> None:
    try:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            target = getattr(message, field.name)
            for key, item in value.items():
                if isinstance(item, Message):
                    target[key].CopyFrom(item)
                else:
                    target[key] = item
        elif field.is_repeated:
            target = getattr(message, field.name)
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, field.name).CopyFrom(value)
        else:
            setattr(message, field.name, value)
    except (TypeError, ValueError):
        pass  # e.g. a surrogate the runtime will not encode: leave the field out


def mutations(encoded: bytes) -> st.SearchStrategy[bytes]:
    """``encoded`` with a few bytes flipped, cut, repeated or spliced in."""

    def mutate(ops: list[tuple[int, int, int, bytes]]) -> bytes:
        data = bytearray(encoded)
        for op, at, length, noise in ops:
            at = at % (len(data) + 1)
            if op == 0 and data:  # flip a byte
                data[at % len(data)] ^= 1 + length % 255
            elif op == 1:  # cut
                del data[at : at + length]
            elif op == 2:  # insert noise
                data[at:at] = noise
            elif op == 3:  # repeat a span
                data[at:at] = data[at : at + length]
            elif op == 4:  # truncate
                del data[at:]
            elif op == 5 and data:  # a varint that never ends
                data[at % len(data) :] = b"\xff" * max(1, length)
        return bytes(data)

    op = st.tuples(
        st.integers(0, 5), st.integers(0, 1 << 16), st.integers(0, 64), st.binary(max_size=16)
    )
    return st.lists(op, min_size=1, max_size=4).map(mutate)


def garbage() -> st.SearchStrategy[bytes]:
    """Bytes with no structure at all, or the shape of one (a tag and a huge length)."""
    return st.one_of(
        st.binary(max_size=256),
        st.just(b""),
        st.just(b"\x0a\xff\xff\xff\xff\x0f"),  # field 1, a 4 GiB length, no body
        st.just(b"\x08" + b"\xff" * 10),  # field 1, a varint longer than 64 bits
        st.just(bytes(range(256))),
    )
