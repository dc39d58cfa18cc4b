"""The 4-task DAG as Celery tasks on Redis (broker and result backend), acks_late:

    BENCH_CELERY_REDIS=redis://127.0.0.1:PORT/0 celery -A bench._peer_celery_app worker --pool prefork -c 2

Each task does nothing but return its own end time. ``dag(index)`` is the canvas:
parser, then validator and summarizer as a group, then publisher (a chord)."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery, chain, group

# Celery binds its app at import: the worker finds it as this module's ``app``.
app = Celery("bench_dag", broker=os.environ.get("BENCH_CELERY_REDIS", "redis://127.0.0.1:6379/0"),
             backend=os.environ.get("BENCH_CELERY_REDIS", "redis://127.0.0.1:6379/0"))
app.conf.update(task_acks_late=True, task_serializer="json", result_serializer="json",
                accept_content=["json"], broker_connection_retry_on_startup=True)


@app.task(name="parser")  # type: ignore[untyped-decorator]
def parser(index: int) -> float:
    return time.time()


@app.task(name="validator")  # type: ignore[untyped-decorator]
def validator(previous: float) -> float:
    return time.time()


@app.task(name="summarizer")  # type: ignore[untyped-decorator]
def summarizer(previous: float) -> float:
    return time.time()


@app.task(name="publisher")  # type: ignore[untyped-decorator]
def publisher(previous: list[float]) -> float:
    return time.time()


def dag(index: int) -> Any:
    return chain(parser.s(index), group(validator.s(), summarizer.s()), publisher.s())
