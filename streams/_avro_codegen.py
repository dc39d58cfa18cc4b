"""Compiled Avro binary codecs for the hot path.

fastavro stays the authority on schemas (parsing, canonical form, fingerprints,
resolution of older writers). What it costs per call (about 5 µs to write and 5 µs
to read a ten-field record, plus the dict it needs on each side) is most of a
processor's budget, so for the *current* schema of each message this module
generates a Python encoder and decoder that go straight between the dataclass and
the Avro binary body. The tests check the bytes against fastavro's, both ways.

Supported: the schemas ``taskplane.streams.serde`` registers (records, enums, unions with
null, arrays, maps, string/long/int/boolean/double/float), walked alongside the
dataclass type hints (``X | None``, ``tuple[X, ...]``, ``dict[str, X]``, Enums,
nested dataclasses).

Where the ``taskplane.streams._avro_native`` extension built (``pip install`` compiles it; the
Makefile's venv does), the same walk yields a *program* instead of Python source and
the C codec runs it: about ten times faster than the generated Python, which stays as
the fallback for a machine without a C compiler. Both are checked against fastavro.
"""

from __future__ import annotations

import dataclasses
import itertools
import struct
import types
import typing
from collections.abc import Callable
from enum import Enum
from typing import Any, NamedTuple

from taskplane.contract.records import plain_fields

try:
    from taskplane.streams import _avro_native
except ImportError:  # no C compiler where this was installed: the generated Python runs
    _avro_native = None  # type: ignore[assignment]

# Opcodes of the native program; streams/_avro_native.c has the same enum.
OP_LONG, OP_STRING, OP_BOOLEAN, OP_DOUBLE, OP_FLOAT, OP_OPTIONAL, OP_ENUM, OP_RECORD, OP_ARRAY, OP_MAP = range(10)

_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")
_SMALL = [bytes([z]) if z < 128 else bytes([(z & 0x7F) | 0x80, z >> 7]) for z in range(16_384)]


_LARGE: dict[int, bytes] = {}  # recent large values: timestamps repeat within a batch


def _varint(z: int) -> bytes:
    cached = _LARGE.get(z)
    if cached is not None:
        return cached
    if not 0 <= z < 1 << 64:
        raise OverflowError("integer out of Avro long range")
    out = bytearray()
    value = z
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    if len(_LARGE) >= 4096:
        _LARGE.clear()
    _LARGE[z] = encoded = bytes(out)
    return encoded


def _read_long(data: bytes, p: int) -> tuple[int, int]:
    shift = 0
    z = 0
    while True:
        c = data[p]
        p += 1
        z |= (c & 0x7F) << shift
        if c < 0x80:
            return (z >> 1) ^ -(z & 1), p
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _zigzag(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63))


class _Generator:
    def __init__(self) -> None:
        self.names = itertools.count()
        self.env: dict[str, Any] = {
            "_S": _SMALL,
            "_varint": _varint,
            "_rl": _read_long,
            "_pd": _DOUBLE.pack,
            "_pf": _FLOAT.pack,
            "_ud": _DOUBLE.unpack_from,
            "_uf": _FLOAT.unpack_from,
        }
        self.named: dict[str, dict[str, Any]] = {}

    def var(self, stem: str) -> str:
        return f"{stem}{next(self.names)}"

    def const(self, value: Any, stem: str = "_k") -> str:
        name = self.var(stem)
        self.env[name] = value
        return name

    def resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema in self.named:
            return self.named[schema]
        if isinstance(schema, dict) and schema.get("type") in ("record", "enum"):
            full = schema["name"] if "." in schema["name"] else f"{schema.get('namespace', '')}.{schema['name']}".lstrip(".")
            self.named[full] = schema
            for field in schema.get("fields", ()):
                self._register_nested(field["type"], full.rpartition(".")[0])
        return schema

    def _register_nested(self, schema: Any, namespace: str) -> None:
        if isinstance(schema, list):
            for branch in schema:
                self._register_nested(branch, namespace)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if kind in ("record", "enum"):
                name = schema["name"] if "." in schema["name"] else f"{schema.get('namespace', namespace)}.{schema['name']}".lstrip(".")
                self.named[name] = schema
                for field in schema.get("fields", ()):
                    self._register_nested(field["type"], name.rpartition(".")[0])
            elif kind == "array":
                self._register_nested(schema["items"], namespace)
            elif kind == "map":
                self._register_nested(schema["values"], namespace)

    # ------------------------------------------------------------ encoding

    def enc_long(self, expr: str, out: list[str], ind: str) -> None:
        """``expr`` must be a plain name: it is evaluated twice."""
        z = self.var("z")
        out.append(f"{ind}{z} = ({expr} << 1) ^ ({expr} >> 63)")
        out.append(f"{ind}b += _S[{z}] if 0 <= {z} < 16384 else _varint({z})")

    def enc_count(self, expr: str, out: list[str], ind: str) -> None:
        """A length or count: never negative, so its zigzag form is a shift."""
        z = self.var("z")
        out.append(f"{ind}{z} = {expr} << 1")
        out.append(f"{ind}b += _S[{z}] if {z} < 16384 else _varint({z})")

    def enc(self, schema: Any, hint: Any, expr: str, out: list[str], ind: str) -> None:
        schema = self.resolve(schema)
        if isinstance(schema, list):
            self.enc_union(schema, hint, expr, out, ind)
            return
        kind = schema if isinstance(schema, str) else schema["type"]
        if kind == "string":
            t = self.var("t")
            out.append(f"{ind}{t} = {expr}.encode()")
            self.enc_count(f"len({t})", out, ind)
            out.append(f"{ind}b += {t}")
        elif kind in ("long", "int"):
            v = self.var("n")
            out.append(f"{ind}{v} = {expr}")
            self.enc_long(v, out, ind)
        elif kind == "boolean":
            out.append(f"{ind}b += b'\\x01' if {expr} else b'\\x00'")
        elif kind == "double":
            out.append(f"{ind}b += _pd({expr})")
        elif kind == "float":
            out.append(f"{ind}b += _pf({expr})")
        elif kind == "enum":
            known = {member.value for member in hint}
            table = {hint(s): _zigzag(i) for i, s in enumerate(schema["symbols"]) if s in known}
            out.append(f"{ind}b += {self.const(table, '_e')}[{expr}]")
        elif kind == "record":
            self.enc_record(schema, hint, expr, out, ind)
        elif kind == "array":
            (item_hint,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
            seq, item = self.var("seq"), self.var("it")
            out.append(f"{ind}{seq} = {expr}")
            out.append(f"{ind}if {seq}:")
            self.enc_count(f"len({seq})", out, ind + "    ")
            out.append(f"{ind}    for {item} in {seq}:")
            self.enc(schema["items"], item_hint, item, out, ind + "        ")
            out.append(f"{ind}b += b'\\x00'")
        elif kind == "map":
            _, value_hint = typing.get_args(hint)
            mapping, key = self.var("m"), self.var("k")
            out.append(f"{ind}{mapping} = {expr}")
            out.append(f"{ind}if {mapping}:")
            self.enc_count(f"len({mapping})", out, ind + "    ")
            out.append(f"{ind}    for {key} in sorted({mapping}):")
            self.enc("string", str, key, out, ind + "        ")
            self.enc(schema["values"], value_hint, f"{mapping}[{key}]", out, ind + "        ")
            out.append(f"{ind}b += b'\\x00'")
        else:
            raise TypeError(f"no compiled codec for Avro type {kind!r}")

    def enc_union(self, branches: list[Any], hint: Any, expr: str, out: list[str], ind: str) -> None:
        if len(branches) != 2 or "null" not in branches:
            raise TypeError(f"only [null, T] unions are compiled, not {branches!r}")
        null_index = branches.index("null")
        other = branches[1 - null_index]
        inner = _optional_inner(hint)
        v = self.var("u")
        out.append(f"{ind}{v} = {expr}")
        out.append(f"{ind}if {v} is None:")
        out.append(f"{ind}    b += {_zigzag(null_index)!r}")
        out.append(f"{ind}else:")
        out.append(f"{ind}    b += {_zigzag(1 - null_index)!r}")
        self.enc(other, inner, v, out, ind + "    ")

    def enc_record(self, schema: dict[str, Any], cls: Any, expr: str, out: list[str], ind: str) -> None:
        hints = _hints(cls)
        obj = self.var("r")
        out.append(f"{ind}{obj} = {expr}")
        for field in schema["fields"]:
            self.enc(field["type"], hints[field["name"]], f"{obj}.{field['name']}", out, ind)

    # ------------------------------------------------------------ decoding

    def dec_long(self, target: str, out: list[str], ind: str) -> None:
        c = self.var("c")
        out.append(f"{ind}{c} = d[p]")
        out.append(f"{ind}if {c} < 128:")
        out.append(f"{ind}    {target} = ({c} >> 1) ^ -({c} & 1)")
        out.append(f"{ind}    p += 1")
        out.append(f"{ind}else:")
        out.append(f"{ind}    {target}, p = _rl(d, p)")

    def dec(self, schema: Any, hint: Any, target: str, out: list[str], ind: str) -> None:
        schema = self.resolve(schema)
        if isinstance(schema, list):
            if len(schema) != 2 or "null" not in schema:
                raise TypeError(f"only [null, T] unions are compiled, not {schema!r}")
            null_index = schema.index("null")
            index = self.var("i")
            self.dec_long(index, out, ind)
            out.append(f"{ind}if {index} == {null_index}:")
            out.append(f"{ind}    {target} = None")
            out.append(f"{ind}elif {index} == {1 - null_index}:")
            self.dec(schema[1 - null_index], _optional_inner(hint), target, out, ind + "    ")
            out.append(f"{ind}else:")
            out.append(f"{ind}    raise ValueError('bad union index')")
            return
        kind = schema if isinstance(schema, str) else schema["type"]
        if kind == "string":
            n = self.var("n")
            self.dec_long(n, out, ind)
            out.append(f"{ind}{target} = d[p:p + {n}].decode()")
            out.append(f"{ind}p += {n}")
        elif kind in ("long", "int"):
            self.dec_long(target, out, ind)
        elif kind == "boolean":
            out.append(f"{ind}{target} = d[p] == 1")
            out.append(f"{ind}p += 1")
        elif kind == "double":
            out.append(f"{ind}{target} = _ud(d, p)[0]")
            out.append(f"{ind}p += 8")
        elif kind == "float":
            out.append(f"{ind}{target} = _uf(d, p)[0]")
            out.append(f"{ind}p += 4")
        elif kind == "enum":
            known = {member.value for member in hint}
            members = [hint(symbol) if symbol in known else None for symbol in schema["symbols"]]
            index = self.var("i")
            self.dec_long(index, out, ind)
            out.append(f"{ind}{target} = {self.const(members, '_ev')}[{index}]")
            if None in members:
                out.append(f"{ind}if {target} is None:")
                out.append(f"{ind}    raise ValueError('enum symbol unknown to {hint.__qualname__}')")
        elif kind == "record":
            self.dec_record(schema, hint, target, out, ind)
        elif kind in ("array", "map"):
            is_map = kind == "map"
            item_hint = typing.get_args(hint)[1] if is_map else next(a for a in typing.get_args(hint) if a is not Ellipsis)
            acc, count, size, item, key = (self.var(s) for s in ("acc", "cnt", "sz", "it", "key"))
            out.append(f"{ind}{acc} = {{}}" if is_map else f"{ind}{acc} = []")
            out.append(f"{ind}while True:")
            self.dec_long(count, out, ind + "    ")
            out.append(f"{ind}    if {count} == 0:")
            out.append(f"{ind}        break")
            out.append(f"{ind}    if {count} < 0:")
            out.append(f"{ind}        {count} = -{count}")
            self.dec_long(size, out, ind + "        ")
            out.append(f"{ind}    for _ in range({count}):")
            if is_map:
                self.dec("string", str, key, out, ind + "        ")
                self.dec(schema["values"], item_hint, item, out, ind + "        ")
                out.append(f"{ind}        {acc}[{key}] = {item}")
            else:
                self.dec(schema["items"], item_hint, item, out, ind + "        ")
                out.append(f"{ind}        {acc}.append({item})")
            out.append(f"{ind}{target} = {acc}" if is_map else f"{ind}{target} = tuple({acc})")
        else:
            raise TypeError(f"no compiled codec for Avro type {kind!r}")

    def dec_record(self, schema: dict[str, Any], cls: Any, target: str, out: list[str], ind: str) -> None:
        hints = _hints(cls)
        values = {}
        for field in schema["fields"]:
            name = field["name"]
            if name not in hints:
                raise TypeError(f"{cls.__qualname__} has no field {name!r}")
            values[name] = self.var("f")
            self.dec(field["type"], hints[name], values[name], out, ind)
        order = [f.name for f in dataclasses.fields(cls)]
        missing = [name for name in order if name not in values]
        if missing:
            raise TypeError(f"schema lacks fields {missing} of {cls.__qualname__}")
        args = ", ".join(values[name] for name in order)
        out.append(f"{ind}{target} = {self.const(cls, '_cls')}({args})")

    # ------------------------------------------------------------ native programs

    def program(self, schema: Any, hint: Any) -> tuple[Any, ...]:
        """The node of the native codec's program for ``schema`` read into ``hint``."""
        schema = self.resolve(schema)
        if isinstance(schema, list):
            if len(schema) != 2 or "null" not in schema:
                raise TypeError(f"only [null, T] unions are compiled, not {schema!r}")
            null_index = schema.index("null")
            return (OP_OPTIONAL, null_index, self.program(schema[1 - null_index], _optional_inner(hint)))
        kind = schema if isinstance(schema, str) else schema["type"]
        simple = {"string": OP_STRING, "long": OP_LONG, "int": OP_LONG, "boolean": OP_BOOLEAN,
                  "double": OP_DOUBLE, "float": OP_FLOAT}
        if kind in simple:
            return (simple[kind],)
        if kind == "enum":
            known = {member.value for member in hint}
            symbols = schema["symbols"]
            table = {hint(s): i for i, s in enumerate(symbols) if s in known}
            members = tuple(hint(s) if s in known else None for s in symbols)
            return (OP_ENUM, table, members, hint)
        if kind == "record":
            return self.record_program(schema["fields"], hint)
        if kind == "array":
            (item_hint,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
            return (OP_ARRAY, self.program(schema["items"], item_hint))
        if kind == "map":
            return (OP_MAP, self.program(schema["values"], typing.get_args(hint)[1]))
        raise TypeError(f"no compiled codec for Avro type {kind!r}")

    def record_program(self, fields: list[dict[str, Any]], cls: Any) -> tuple[Any, ...]:
        hints = _hints(cls)
        names = tuple(field["name"] for field in fields)
        unknown = [name for name in names if name not in hints]
        if unknown:
            raise TypeError(f"{cls.__qualname__} has no field(s) {unknown}")
        order = [f.name for f in dataclasses.fields(cls)]
        missing = [name for name in order if name not in names]
        if missing or len(order) != len(names):
            raise TypeError(f"schema lacks fields {missing} of {cls.__qualname__}")
        programs = tuple(self.program(field["type"], hints[field["name"]]) for field in fields)
        direct = plain_fields(cls) is not None  # then the C decoder sets the fields itself
        return (OP_RECORD, cls, names, programs, direct, tuple(names.index(name) for name in order))


def _hints(cls: Any) -> dict[str, Any]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    return typing.get_type_hints(cls)


def _optional_inner(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    raise TypeError(f"a [null, T] union needs an `X | None` field, not {hint!r}")


class CompiledCodec(NamedTuple):
    """One message schema's hot-path codec."""

    encode: Callable[[Any, Any], bytes]  # (value, meta) -> bytes, header included
    decode: Callable[[bytes, int], tuple[Any, Any, int]]  # (data, offset) -> (meta, value, end)
    encode_fields: Callable[..., bytes]  # (value, *meta fields in schema order) -> bytes
    native: Any  # the _avro_native.Codec, or None for generated Python


def compile_message(
    schema: dict[str, Any], meta_cls: type, cls: type, header: bytes, native: bool = True
) -> CompiledCodec:
    """The codec of a message schema whose first field is ``meta``: the C one when
    ``native`` and the extension is built, else generated Python. Raises TypeError
    where schema and dataclass disagree."""
    gen = _Generator()
    gen.resolve(schema)
    fields = schema["fields"]
    if fields[0]["name"] != "meta":
        raise TypeError(f"{schema['name']}: first field must be meta")
    meta_schema, body = fields[0]["type"], fields[1:]
    hints = _hints(cls)
    if set(hints) != {f["name"] for f in body}:
        raise TypeError(f"{cls.__qualname__} fields differ from schema {schema['name']}")
    meta_fields = gen.resolve(meta_schema)["fields"]
    if [f["name"] for f in meta_fields] != [f.name for f in dataclasses.fields(meta_cls)]:
        raise TypeError(f"{meta_cls.__qualname__} fields are not in the order of its schema")

    if native and _avro_native is not None:
        codec = _avro_native.Codec(header, gen.record_program(meta_fields, meta_cls), gen.record_program(body, cls))
        return CompiledCodec(codec.encode, codec.decode, codec.encode_fields, codec)

    enc = ["def encode(value, meta):", f"    b = bytearray({header!r})"]
    gen.enc(meta_schema, meta_cls, "meta", enc, "    ")
    for field in body:
        gen.enc(field["type"], hints[field["name"]], f"value.{field['name']}", enc, "    ")
    enc.append("    return bytes(b)")

    dec = ["def decode(d, p):"]
    gen.dec(meta_schema, meta_cls, "meta", dec, "    ")
    values = {}
    for field in body:
        values[field["name"]] = gen.var("f")
        gen.dec(field["type"], hints[field["name"]], values[field["name"]], dec, "    ")
    args = ", ".join(values[f.name] for f in dataclasses.fields(cls))
    dec.append(f"    return meta, {gen.const(cls, '_cls')}({args}), p")

    namespace = dict(gen.env)
    exec(compile("\n".join(enc + dec), f"<avro codec {schema['name']}>", "exec"), namespace)  # noqa: S102
    encode = namespace["encode"]

    def encode_fields(value: Any, *meta_fields: Any) -> bytes:
        return bytes(encode(value, meta_cls(*meta_fields)))

    return CompiledCodec(encode, namespace["decode"], encode_fields, None)


def native_available() -> bool:
    return _avro_native is not None


def native_dispatch(codecs: dict[bytes, Any]) -> Any:
    """One native decoder over native codecs by fingerprint (see Serde.decode)."""
    assert _avro_native is not None
    return _avro_native.Codecs(codecs)


__all__ = ["CompiledCodec", "compile_message", "native_available", "native_dispatch", "Enum"]
