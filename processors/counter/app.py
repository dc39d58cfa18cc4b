"""Run the counting decider as a processor process (used by the runtime's kill tests
and as the smallest example of wiring a decider to the runtime).

    python -m taskplane.processors.counter.app --bootstrap HOST:PORT --prefix P --instance ID
"""

from __future__ import annotations

import argparse
import logging

from taskplane.processors.counter.decider import CounterDecider
from taskplane.streams.runtime import ProcessorRuntime, ProcessorSpec, run_until_signalled
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.topics import Topics, TopicSpec

PARTITIONS = 4


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
    runtime = ProcessorRuntime(
        CounterDecider(), counter_spec(), {"bootstrap.servers": args.bootstrap}, Topics(args.prefix), settings
    )
    run_until_signalled(runtime, on_ready=lambda: print("ready", flush=True))


if __name__ == "__main__":
    main()
