"""The counting decider as a processor process: the runtime's kill tests and its
benchmark run it. Its messages are no part of taskplane's contract, so it brings its
own schemas (``schemas/``) and serde.

    python -m bench.counter.app --bootstrap HOST:PORT --prefix P --instance ID
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bench.counter import decider
from bench.counter.decider import CounterDecider
from taskplane.streams.runtime import ProcessorRuntime, ProcessorSpec, run_until_signalled
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.serde import SchemaRegistry, Serde, domain_classes
from taskplane.streams.topics import Topics, TopicSpec

PARTITIONS = 4
SCHEMAS = Path(__file__).resolve().parent / "schemas"


def counter_topics() -> list[TopicSpec]:
    compact = {"cleanup.policy": "compact"}
    return [
        TopicSpec("commands", PARTITIONS),
        TopicSpec("events", PARTITIONS),
        TopicSpec("changelog", PARTITIONS, compact),
        TopicSpec("poison", 1),
    ]


def counter_spec() -> ProcessorSpec:
    return ProcessorSpec("counter", "commands", "events", "changelog", counter_topics()[2])


def counter_serde(native: bool = True) -> Serde:
    """taskplane's serde plus the counter's messages (namespace ``taskplane.counter``)."""
    classes = domain_classes({"taskplane.counter": (decider,)})
    return Serde(SchemaRegistry.from_directory(extra=[SCHEMAS]), {**domain_classes(), **classes}, native)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = RuntimeSettings(instance_id=args.instance, group_id=f"{args.prefix}-counter",
                               max_batch_records=args.batch, session_timeout_ms=6_000)
    runtime = ProcessorRuntime(CounterDecider(), counter_spec(), {"bootstrap.servers": args.bootstrap},
                               Topics(args.prefix), settings, serde=counter_serde())
    run_until_signalled(runtime, on_ready=lambda: print("ready", flush=True))


if __name__ == "__main__":
    main()
