"""The wire format: Avro single-object encoding of domain dataclasses.

Every record is ``C3 01`` + the 8-byte little-endian CRC-64-AVRO fingerprint of the
writer schema's parsing canonical form + the schemaless Avro body. The body is the
message schema: a ``taskplane.Meta`` envelope first, then the dataclass fields.
Schemas live in ``schemas/`` (current) and ``schemas/releases/<version>/`` (released
fixtures); any fingerprint found there decodes, resolved to the current schema of the
same name. See ``docs/wire-format.md``.
"""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, is_dataclass
from io import BytesIO
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from taskplane.contract import breaker, cron, governance, messages, permits, plan, scheduling, state
from taskplane.streams._avro_codegen import compile_message, native_dispatch
from taskplane.streams._avro_mapping import RecordMapping, record_mapping
from taskplane.streams.exceptions import SerdeError

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
SCHEMA_VERSION = 3  # the contract release writers follow; bump when cutting the next fixture
MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8
META_NAME = "taskplane.Meta"

# Where the dataclass of each schema namespace lives (schema name == class name): the
# contract layer's modules. Test and bench deciders bring their own (``domain_classes``).
DOMAIN_MODULES: Mapping[str, tuple[ModuleType, ...]] = {
    "taskplane.orchestrator": (plan, messages, state, governance),
    "taskplane.breaker": (breaker, permits),
    "taskplane.cron": (cron,),
    "taskplane.dispatch": (scheduling,),
}

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "enum", "fixed", "error"})


@dataclass(frozen=True, slots=True)
class Meta:
    """The envelope of every message: identity, routing key and causality."""

    message_id: str
    key: str
    type: str
    schema_version: int
    causation_id: str | None
    correlation_id: str | None
    timestamp_ms: int


def new_meta(
    key: str,
    type_name: str,
    timestamp_ms: int,
    causation_id: str | None = None,
    correlation_id: str | None = None,
) -> Meta:
    """A fresh envelope with a random ``message_id``; pass a ``Meta`` yourself for
    deterministic ids."""
    return Meta(
        uuid.uuid4().hex, key, type_name, SCHEMA_VERSION, causation_id, correlation_id, timestamp_ms
    )


# ------------------------------------------------------------------ schemas


def load_schema_set(directory: Path) -> dict[str, dict[str, Any]]:
    """Every ``*.avsc`` of ``directory`` (not recursive), by full name."""
    schemas: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.avsc")):
        try:
            schema = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise SerdeError(f"{path}: unreadable schema: {error}") from error
        schemas[_full_name(schema, "")] = schema
    return schemas


def is_message(schema: Mapping[str, Any]) -> bool:
    """A top-level message schema: a record whose first field is the Meta envelope."""
    fields = schema.get("fields") or [{}]
    return schema.get("type") == "record" and fields[0].get("type") == META_NAME


def expand(full_name: str, schemas: Mapping[str, Any]) -> dict[str, Any]:
    """``full_name`` as one self-contained schema: each named type it references is
    inlined at its first use and referenced by full name after, as Avro requires."""
    defined: set[str] = set()

    def walk(node: Any, namespace: str) -> Any:
        if isinstance(node, list):
            return [walk(branch, namespace) for branch in node]
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return node
            name = node if "." in node else f"{namespace}.{node}".lstrip(".")
            if name in defined:
                return name
            if name not in schemas:
                raise SerdeError(f"{full_name}: unknown type {node!r}")
            return walk(schemas[name], namespace)
        kind = node["type"]
        if kind in _NAMED:
            name = _full_name(node, namespace)
            defined.add(name)
            inner = name.rpartition(".")[0]
            if kind in ("record", "error"):
                fields = [{**field, "type": walk(field["type"], inner)} for field in node["fields"]]
                return {**node, "fields": fields}
            return dict(node)
        if kind == "array":
            return {**node, "items": walk(node["items"], namespace)}
        if kind == "map":
            return {**node, "values": walk(node["values"], namespace)}
        return walk(kind, namespace)

    return dict(walk(full_name, ""))


def schema_fingerprint(expanded: Mapping[str, Any]) -> bytes:
    """CRC-64-AVRO of the parsing canonical form, little-endian as single-object
    encoding writes it."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(dict(expanded)), "CRC-64-AVRO"))


def _full_name(schema: Mapping[str, Any], namespace: str) -> str:
    name: str = schema["name"]
    if "." in name:
        return name
    return f"{schema.get('namespace', namespace)}.{name}".lstrip(".")


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    full_name: str
    fingerprint: bytes
    expanded: dict[str, Any]
    parsed: Any  # fastavro's parsed form
    release: str | None  # None for the current schema


class SchemaRegistry:
    """Message schemas by fingerprint: the current set, plus older releases so any
    version still on a topic decodes."""

    def __init__(
        self,
        current: Mapping[str, Any],
        releases: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self._current = {
            name: self._register(name, current, None)
            for name in current
            if is_message(current[name])
        }
        self._by_fingerprint = {entry.fingerprint: entry for entry in self._current.values()}
        for release, schemas in (releases or {}).items():
            for name in schemas:
                if is_message(schemas[name]):
                    entry = self._register(name, schemas, release)
                    self._by_fingerprint.setdefault(entry.fingerprint, entry)

    @classmethod
    def from_directory(cls, root: Path = SCHEMA_DIR, extra: Iterable[Path] = ()) -> SchemaRegistry:
        """``root/*.avsc`` as current, each ``root/releases/<version>/`` as a release;
        the ``*.avsc`` of each ``extra`` directory join the current set (a test or bench
        decider's own messages, which are no part of taskplane's contract)."""
        releases = {
            path.name: load_schema_set(path) for path in sorted((root / "releases").glob("*/"))
        }
        current = load_schema_set(root)
        for directory in extra:
            current.update(load_schema_set(directory))
        return cls(current, releases)

    @staticmethod
    def _register(name: str, schemas: Mapping[str, Any], release: str | None) -> RegisteredSchema:
        expanded = expand(name, schemas)
        try:
            parsed = parse_schema(expanded, named_schemas={})
        except Exception as error:  # fastavro raises several types for a bad schema
            raise SerdeError(f"{name} ({release or 'current'}): invalid schema: {error}") from error
        return RegisteredSchema(name, schema_fingerprint(expanded), expanded, parsed, release)

    def current(self, full_name: str) -> RegisteredSchema | None:
        return self._current.get(full_name)

    def writer(self, fingerprint_bytes: bytes) -> RegisteredSchema | None:
        return self._by_fingerprint.get(fingerprint_bytes)

    def messages(self) -> Iterable[RegisteredSchema]:
        """The current message schemas."""
        return self._current.values()

    def all(self) -> Iterable[RegisteredSchema]:
        """Every known writer schema, current and released."""
        return self._by_fingerprint.values()


def domain_classes(modules: Mapping[str, Iterable[ModuleType]] = DOMAIN_MODULES) -> dict[str, type]:
    """Dataclasses of the domain modules by schema full name (``namespace.ClassName``)."""
    classes: dict[str, type] = {}
    for namespace, namespace_modules in modules.items():
        for module in namespace_modules:
            for name, obj in vars(module).items():
                if inspect.isclass(obj) and obj.__module__ == module.__name__ and is_dataclass(obj):
                    classes[f"{namespace}.{name}"] = obj
    return classes


# ------------------------------------------------------------------ serde


@dataclass(frozen=True, slots=True)
class _Codec:
    schema: RegisteredSchema
    header: bytes
    mapping: RecordMapping
    encode: Callable[[Any, Meta], bytes]
    decode: Callable[[bytes, int], tuple[Meta, Any, int]]
    encode_fields: Callable[..., bytes]


class Serde:
    """Domain dataclass + ``Meta`` <-> single-object-encoded Avro bytes.

    Encoding the same value and envelope twice gives the same bytes. ``native=False``
    uses the generated Python codecs even where the C extension is built (tests compare
    the two).
    """

    def __init__(
        self,
        registry: SchemaRegistry | None = None,
        classes: Mapping[str, type] | None = None,
        native: bool = True,
    ) -> None:
        self._registry = registry or SchemaRegistry.from_directory()
        classes = domain_classes() if classes is None else classes
        self._meta = record_mapping(Meta)
        self._by_class: dict[type, _Codec] = {}
        self._by_name: dict[str, _Codec] = {}
        self._by_fingerprint: dict[bytes, _Codec] = {}
        natives: dict[bytes, Any] = {}
        for schema in self._registry.messages():
            cls = classes.get(schema.full_name)
            if cls is None:  # a schema with no class here: its records fail to decode, loudly
                continue
            header = MAGIC + schema.fingerprint
            compiled = compile_message(schema.expanded, Meta, cls, header, native)
            if compiled.native is not None:
                natives[schema.fingerprint] = compiled.native
            codec = _Codec(schema, header, record_mapping(cls), compiled.encode, compiled.decode, compiled.encode_fields)
            self._by_class[cls] = self._by_name[schema.full_name] = codec
            self._by_fingerprint[schema.fingerprint] = codec
        # Whether the C codecs run; then one native call decodes any current record.
        self.native = bool(natives) and len(natives) == len(self._by_fingerprint)
        self._native_decode = native_dispatch(natives).decode if self.native else None

    @property
    def registry(self) -> SchemaRegistry:
        return self._registry

    def encode(self, value: object, meta: Meta) -> bytes:
        codec = self._by_class.get(type(value))
        if codec is None:
            raise SerdeError(f"no schema for {type(value).__qualname__}")
        try:
            return codec.encode(value, meta)
        except Exception as error:  # a field of the wrong type, an int beyond 64 bits, ...
            raise SerdeError(f"cannot encode {type(value).__qualname__}: {error!r}") from error

    def encoder_of(self, cls: type) -> Callable[..., bytes]:
        """``(value, *Meta fields) -> bytes`` for instances of ``cls``: the runtime's hot
        path, which skips building a Meta per event. Wrap failures as ``encode`` does."""
        codec = self._by_class.get(cls)
        if codec is None:
            raise SerdeError(f"no schema for {cls.__qualname__}")
        return codec.encode_fields

    def encode_with_fastavro(self, value: object, meta: Meta) -> bytes:
        """The reference encoding the compiled codecs are checked against."""
        codec = self._by_class.get(type(value))
        if codec is None:
            raise SerdeError(f"no schema for {type(value).__qualname__}")
        record = codec.mapping.to_record(value)
        record["meta"] = self._meta.to_record(meta)
        out = BytesIO()
        out.write(codec.header)
        schemaless_writer(out, codec.schema.parsed, record)
        return out.getvalue()

    def decode(self, data: bytes) -> tuple[Meta, object]:
        native_decode = self._native_decode
        if native_decode is not None:
            try:
                decoded = native_decode(data)
            except Exception:  # the path below raises it again, as a SerdeError that says where
                decoded = None
            if decoded is not None:
                return decoded  # type: ignore[no-any-return]
        return self._decode(data)

    def _decode(self, data: bytes) -> tuple[Meta, object]:
        """Everything the one native call does not take: older writers (through fastavro),
        the pure-Python codecs, and SerdeErrors that say what was wrong where."""
        if len(data) < HEADER_SIZE or data[:2] != MAGIC:
            raise SerdeError("not an Avro single-object record (bad magic or too short)")
        fingerprint_bytes = bytes(data[2:HEADER_SIZE])
        codec = self._by_fingerprint.get(fingerprint_bytes)
        if codec is not None:  # written with the current schema: the compiled fast path
            try:
                meta, value, end = codec.decode(data, HEADER_SIZE)
            except Exception as error:  # truncated or corrupt body
                raise SerdeError(f"undecodable {codec.schema.full_name} body: {error!r}") from error
            if end != len(data):
                raise SerdeError(f"{codec.schema.full_name}: {len(data) - end} trailing byte(s)")
            return meta, value
        writer = codec.schema if codec is not None else self._resolve(fingerprint_bytes)
        if codec is None:
            codec = self._by_name.get(writer.full_name)
            if codec is None:
                raise SerdeError(f"no current schema or class for {writer.full_name}")
        body = BytesIO(data)
        body.seek(HEADER_SIZE)
        try:
            reader = None if writer is codec.schema else codec.schema.parsed
            record = cast(dict[str, Any], schemaless_reader(body, writer.parsed, reader))
        except Exception as error:  # truncated or corrupt body: fastavro raises many types
            raise SerdeError(f"undecodable {writer.full_name} body: {error!r}") from error
        if body.tell() != len(data):
            raise SerdeError(f"{writer.full_name}: {len(data) - body.tell()} trailing byte(s)")
        try:
            meta = self._meta.from_record(record.pop("meta"))
            return meta, codec.mapping.from_record(record)
        except Exception as error:  # e.g. an enum symbol the class does not have
            raise SerdeError(
                f"{writer.full_name} does not map onto {codec.mapping.cls.__qualname__}: {error!r}"
            ) from error

    def _resolve(self, fingerprint_bytes: bytes) -> RegisteredSchema:
        writer = self._registry.writer(fingerprint_bytes)
        if writer is None:
            raise SerdeError(f"unknown schema fingerprint {fingerprint_bytes.hex()}")
        return writer
