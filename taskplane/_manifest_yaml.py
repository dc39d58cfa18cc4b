"""Reading a manifest's YAML with limits, so no input crashes or stalls the reader.

A manifest is small: a few hundred agents at most, nested a few levels. Anything
beyond the limits below is refused with a ``ManifestError`` naming the place, before
the parsed data reaches validation (docs/manifest.md, "Limits"):
- the text: at most ``MAX_BYTES``;
- nesting: at most ``MAX_DEPTH`` levels of lists and mappings (PyYAML's composer recurses
  once per level: deeper input would end in a ``RecursionError``);
- size: at most ``MAX_NODES`` values counted with every alias expanded, so an alias bomb
  ("billion laughs") is refused while it is still a few lines, and an alias inside the
  node it names (a self-containing value) is refused outright.
"""

from __future__ import annotations

from typing import Any

import yaml

from taskplane.exceptions import ManifestError

MAX_BYTES = 1_048_576
MAX_DEPTH = 32
MAX_NODES = 100_000
ROOT = "<manifest>"
# The largest count a manifest may give (retries, thresholds, concurrency, caps, a rate's
# calls): beyond any real fleet, and far below the Avro longs they are stored in (an apply
# of a 23-digit concurrency validated, then failed to encode).
MAX_COUNT = 1_000_000


def _where(mark: yaml.Mark | None) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ROOT


class LimitedLoader(yaml.SafeLoader):
    """SafeLoader that keeps the limits and refuses a key written twice (YAML would keep
    the last silently)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._weights: dict[int, int] = {}  # id(node) -> its value count, aliases expanded

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            anchored = self.anchors.get(event.anchor)
            if anchored is not None and id(anchored) not in self._weights:
                raise ManifestError([(_where(event.start_mark),
                                      f"alias *{event.anchor} refers to a value that contains it")])
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise ManifestError([(_where(mark), f"nested deeper than {MAX_DEPTH} levels (the limit)")])
        node = super().compose_node(parent, index)
        self._depth -= 1
        if node is None:  # no document
            return None
        weight = self._weights.get(id(node))
        if weight is None:  # a new node: its children are weighed already
            weight = 1
            if isinstance(node, yaml.SequenceNode):
                weight += sum(self._weights[id(child)] for child in node.value)
            elif isinstance(node, yaml.MappingNode):
                weight += sum(self._weights[id(k)] + self._weights[id(v)] for k, v in node.value)
            self._weights[id(node)] = weight
        if weight > MAX_NODES:
            raise ManifestError([(_where(node.start_mark),
                                  f"more than {MAX_NODES} values with aliases expanded (the limit)")])
        return node


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Any:
    loader.flatten_mapping(node)
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str | int | float | bool) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key) if isinstance(key, str | int | float | bool) else None
    return loader.construct_mapping(node)


LimitedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def parse_yaml(text: str) -> object:
    """Parse one YAML document; syntax errors and broken limits become a
    ``ManifestError`` with line and column."""
    if len(text) > MAX_BYTES:
        raise ManifestError([(ROOT, f"larger than {MAX_BYTES} bytes (the limit)")])
    loader = None
    try:
        loader = LimitedLoader(text)  # its reader refuses control characters at once
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(part for part in (exc.context, exc.problem) if part)
        raise ManifestError([(_where(mark), f"invalid YAML: {reason or exc}")]) from None
    except yaml.YAMLError as exc:
        raise ManifestError([(ROOT, f"invalid YAML: {exc}")]) from None
    except (ValueError, OverflowError, TypeError) as exc:  # a scalar PyYAML cannot build (a date, a huge int)
        reason = "a number too long to read" if "integer string conversion" in str(exc) else _clipped(str(exc))
        raise ManifestError([(ROOT, f"invalid YAML value: {reason}")]) from None
    finally:
        if loader is not None:
            loader.dispose()


def _clipped(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
