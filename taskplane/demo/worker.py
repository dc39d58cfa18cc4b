"""One worker process serving several systems (one ``Worker`` per system, in threads),
as the demo and the end-to-end tests start it:

    python -m taskplane.demo.worker --name w1 --serve document-pipeline=examples/document-pipeline/tools.py \\
        --serve payment-processor=taskplane.demo.payments

Endpoints and prefix come from TASKPLANE_BOOTSTRAP_SERVERS / TASKPLANE_TOPIC_PREFIX;
worker ids are ``<name>.<system>``. SIGTERM stops every worker (leases released).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from taskplane.streams.settings import StackSettings
from taskplane.streams.topics import Topics
from taskplane.workers.loader import load_user_module
from taskplane.workers.sdk import Registry
from taskplane.workers.settings import WorkerSettings
from taskplane.workers.worker import Worker


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve several AgentSystems from one process.")
    parser.add_argument("--name", required=True, help="process name; worker ids are NAME.SYSTEM")
    parser.add_argument("--serve", action="append", required=True, metavar="SYSTEM=MODULE")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {args.name} %(levelname)s %(name)s %(message)s")

    from taskplane.workers.approvals import drop_approval_key

    drop_approval_key()  # workers never hold the key people sign decisions with
    stack = StackSettings()
    extra: dict[str, object] = {"log_level": 3}  # errors only
    kafka = stack.kafka_config(None, extra)
    topics = Topics(stack.topic_prefix)
    workers = []
    for pair in args.serve:
        system, _, module = pair.partition("=")
        registry = Registry.from_module(load_user_module(module or None, system))
        settings = WorkerSettings(worker_id=f"{args.name}.{system}", concurrency=args.concurrency,
                                  claim_timeout_s=2.0, claim_attempts=2,
                                  shutdown_grace_s=5.0)
        workers.append(Worker(kafka, topics, system, registry, settings))

    def stop(*_: object) -> None:
        for worker in workers:
            worker.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    threads = [threading.Thread(target=w.run, name=w.worker_id) for w in workers]
    for thread in threads:
        thread.start()
    print(f"{args.name} ready: " + ", ".join(w.worker_id for w in workers), flush=True)
    for thread in threads:
        while thread.is_alive():  # join with a timeout keeps the main thread responsive to signals
            thread.join(0.5)


if __name__ == "__main__":
    main()
