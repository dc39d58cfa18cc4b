"""document-pipeline: parser → (validator, summarizer) → publisher, with real tools.

Run input: ``{"folder": "examples/document-pipeline/docs"}``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from taskplane import AgentContext, agent, tool
from taskplane._examples.db import database_url, ensure_table
from taskplane.testing import simulating
from taskplane.testing.fakes import FakeTable
from taskplane.workers.exceptions import NonRetryableError

DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "kind", "text"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "kind": {"type": "string", "enum": ["text", "markdown", "json"]},
        "text": {"type": "string", "minLength": 20},
    },
}
# Simulated (``taskplane simulate``): results go to an in-memory table, new for each seed.
RESULTS = FakeTable() if simulating() else None
_KINDS = {".txt": "text", ".md": "markdown", ".json": "json"}
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "will",
        "with",
        "not",
        "but",
        "can",
        "each",
        "they",
        "their",
        "when",
        "which",
    ]
)


@tool("document.extract")
def extract(folder: str) -> list[dict[str, str]]:
    """Every .txt/.md/.json file of ``folder`` (sorted), with its text."""
    root = Path(folder)
    if not root.is_dir():
        raise NonRetryableError(f"no such folder: {folder}")
    documents = []
    for path in sorted(root.iterdir()):
        kind = _KINDS.get(path.suffix)
        if kind is None:
            continue
        text = path.read_text(encoding="utf-8")
        if kind == "json":
            text = " ".join(str(v) for v in json.loads(text).values())
        documents.append({"name": path.name, "kind": kind, "text": text})
    return documents


def validate(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """A small JSON-schema subset: type, required, properties, enum, minLength."""
    types = {"object": dict, "string": str, "array": list, "number": (int, float), "boolean": bool}
    expected = schema.get("type")
    if expected and not isinstance(value, types[expected]):
        return [f"{path}: expected {expected}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not one of {schema['enum']}")
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        errors.append(f"{path}: shorter than {schema['minLength']}")
    if isinstance(value, dict):
        errors += [
            f"{path}.{name}: required" for name in schema.get("required", []) if name not in value
        ]
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                errors += validate(value[name], sub, f"{path}.{name}")
    return errors


@tool("schema.validate")
def schema_validate(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    errors = validate(document, schema)
    return {"name": document.get("name"), "valid": not errors, "errors": errors}


@tool("text.summarize")
def summarize(text: str, sentences: int = 2) -> str:
    """Extractive: the ``sentences`` highest-scoring sentences by word frequency, in order."""
    found = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.replace("\n", " ")) if s.strip()]
    words = [w for w in re.findall(r"[a-z']+", text.lower()) if w not in _STOPWORDS]
    frequency = Counter(words)

    def score(sentence: str) -> float:
        tokens = [w for w in re.findall(r"[a-z']+", sentence.lower()) if w not in _STOPWORDS]
        return sum(frequency[w] for w in tokens) / (len(tokens) or 1)

    best = sorted(sorted(range(len(found)), key=lambda i: -score(found[i]))[:sentences])
    return " ".join(found[i] for i in best)


@tool("database.store", env=("TASKPLANE_DATABASE_URL",))
def store(run_id: str, results: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
    """Upsert the run's results into ``document_results`` (created if missing)."""
    if RESULTS is not None:
        RESULTS.upsert(run_id, {"results": results, "idempotency_key": idempotency_key})
        return {"run_id": run_id, "documents": len(results.get("documents", []))}
    import psycopg

    with psycopg.connect(database_url(), autocommit=True) as conn:
        ensure_table(
            conn,
            "document_results",
            "CREATE TABLE IF NOT EXISTS document_results (run_id text PRIMARY KEY, "
            "results jsonb NOT NULL, idempotency_key text NOT NULL, "
            "stored_at timestamptz NOT NULL DEFAULT now())",
        )
        conn.execute(
            "INSERT INTO document_results (run_id, results, idempotency_key) VALUES (%s, %s, %s) "
            "ON CONFLICT (run_id) DO UPDATE SET results = EXCLUDED.results, "
            "idempotency_key = EXCLUDED.idempotency_key",
            (run_id, json.dumps(results), idempotency_key),
        )
    return {"run_id": run_id, "documents": len(results.get("documents", []))}


@agent("parser")
def parser(ctx: AgentContext) -> dict[str, Any]:
    return {"documents": ctx.call_tool("document.extract", folder=ctx.run_input["folder"])}


@agent("validator")
def validator(ctx: AgentContext) -> dict[str, Any]:
    reports = [
        ctx.call_tool("schema.validate", document=doc, schema=DOCUMENT_SCHEMA)
        for doc in ctx.inputs["parser"]["documents"]
    ]
    return {"reports": reports, "valid": all(r["valid"] for r in reports)}


@agent("summarizer")
def summarizer(ctx: AgentContext) -> dict[str, Any]:
    return {
        "summaries": {
            doc["name"]: ctx.call_tool("text.summarize", text=doc["text"])
            for doc in ctx.inputs["parser"]["documents"]
        }
    }


@agent("publisher")
def publisher(ctx: AgentContext) -> dict[str, Any]:
    reports = {r["name"]: r for r in ctx.inputs["validator"]["reports"]}
    documents = [
        {"name": name, "summary": summary, "valid": reports[name]["valid"]}
        for name, summary in ctx.inputs["summarizer"]["summaries"].items()
    ]
    stored: dict[str, Any] = ctx.call_tool("database.store", run_id=ctx.run_id, results={"documents": documents})
    return stored
