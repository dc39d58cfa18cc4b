"""One error tree: every taskplane exception is a TaskplaneError that says whether it is
retryable, and Kafka's errors are wrapped at the boundary."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from confluent_kafka import KafkaError

import taskplane
from taskplane.contract.errors import TaskplaneError
from taskplane.streams.exceptions import KafkaIOError, StreamsError
from taskplane.streams.runtime import ProcessorRuntime, ProcessorSpec
from taskplane.streams.topics import Topics


def taskplane_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(taskplane.__path__, "taskplane."):
        if info.name.endswith("__main__") or info.name.split(".")[-1].startswith("_runner"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            # Exception only: a bare BaseException is control flow (the simulator's
            # SimCrash unwinds agent code that catches Exception), not an error.
            if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == info.name:
                found[f"{info.name}.{name}"] = obj
    return [found[name] for name in sorted(found)]


def test_the_walk_finds_the_former_roots() -> None:
    names = {cls.__name__ for cls in taskplane_exceptions()}
    assert {"StreamsError", "WorkerError", "DecisionError", "InconsistentLog", "LocalStackError",
            "ReadModelError", "DurationError", "UserInputError", "KafkaIOError"} <= names


@pytest.mark.parametrize("cls", taskplane_exceptions(), ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_every_error_is_rooted_in_taskplane_error_and_says_if_it_is_retryable(cls: type[BaseException]) -> None:
    assert issubclass(cls, TaskplaneError)
    assert isinstance(cls.retryable, bool)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (KafkaError(KafkaError._TRANSPORT), True),
        (KafkaError(KafkaError._ALL_BROKERS_DOWN), True),
        (KafkaError(KafkaError.NOT_COORDINATOR, retriable=True), True),
        (KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), False),
        (KafkaError(KafkaError._TRANSPORT, fatal=True), False),  # a fatal client never recovers
    ],
)
def test_kafka_errors_are_wrapped_with_their_retryability(error: KafkaError, retryable: bool) -> None:
    wrapped = KafkaIOError.wrap(error, "doing x")
    assert isinstance(wrapped, StreamsError) and isinstance(wrapped, TaskplaneError)
    assert wrapped.retryable is retryable
    assert wrapped.code == error.code()
    assert str(wrapped).startswith("doing x: ")


def test_the_runtime_lets_no_raw_kafka_exception_out() -> None:
    """librdkafka refuses the config at construction: the runtime says so as a
    KafkaIOError, not confluent_kafka.KafkaException."""
    from bench.counter.decider import CounterDecider

    runtime: ProcessorRuntime[object, object, object] = ProcessorRuntime(
        CounterDecider(),  # type: ignore[arg-type]
        ProcessorSpec("wrap-test", "commands", "events", "changelog"),
        {"bootstrap.servers": "127.0.0.1:9", "no.such.librdkafka.option": "1"},
        Topics("wrap"),
    )
    with pytest.raises(KafkaIOError, match="wrap-test: cannot start") as caught:
        runtime.run()
    assert caught.value.retryable is False
