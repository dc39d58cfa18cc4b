"""A transactional producer whose every ``every``-th commit fails, shared by the runtime's
and the dispatcher's failed-commit tests: before committing (an abortable error: the
batch did not commit) or after it (the reply lost: the batch did commit). Subclass it
per test with fresh counters: ``type("Flaky", (FailingCommits,), {"calls": 0, ...})``."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from taskplane.streams.transactions import TransactionalProducer, TransactionWedged


class FailingCommits(TransactionalProducer):
    every = 5
    lost_reply = False
    calls = 0
    failures = 0

    def commit(self, positions: list[TopicPartition], group_metadata: Any) -> float:
        type(self).calls += 1
        if type(self).calls % self.every:
            return super().commit(positions, group_metadata)
        type(self).failures += 1
        if self.lost_reply:
            super().commit(positions, group_metadata)
            raise TransactionWedged("commit_transaction did not return (injected)")
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "injected"))
