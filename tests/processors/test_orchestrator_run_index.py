"""The ``runs`` index the orchestrator derives: one record per run, current at the
moments a client looks (submit, dead letter, replay, end, a rejected submit)."""

from __future__ import annotations

from taskplane.contract.decider import Output
from taskplane.contract.messages import RunRecord, SubmitRun
from taskplane.contract.plan import ExecutionPolicy
from taskplane.processors.orchestrator.retention import Retention
from tests.processors._decider_helpers import RUN, Driver, document_pipeline


def records(run: Driver) -> list[RunRecord]:
    found = [o for o in run.runner.outputs if o.topic == "runs"]
    assert all(isinstance(o, Output) and o.key == RUN for o in found)
    return [o.value for o in found]  # type: ignore[misc]


def test_a_submit_is_indexed_without_its_tasks() -> None:
    run = Driver()
    run.submit()
    [record] = records(run)
    assert (record.run_id, record.system, record.plan_version, record.status) == (RUN, "document-pipeline", "v1",
                                                                                  "running")
    assert record.submitted_ms == run.now and record.tasks == () and not record.retired


def test_the_end_of_a_run_is_indexed_with_its_final_output_only() -> None:
    run = Driver()
    run.submit()
    for task in ("parser", "validator", "summarizer", "publisher"):
        run.run_task(task)
    final = records(run)[-1]
    assert final.status == "succeeded" and final.finished_ms == run.now
    by_task = {t.task: t for t in final.tasks}
    assert {name: t.status for name, t in by_task.items()} == dict.fromkeys(by_task, "succeeded")
    assert by_task["publisher"].output == '{"publisher": "done"}'
    assert by_task["parser"].output is None  # not a final task: result() never reads it


def test_a_dead_letter_and_its_replay_are_indexed() -> None:
    run = Driver(document_pipeline(ExecutionPolicy(max_retries=0)))
    run.submit()
    run.claim("parser")
    run.fail("parser", error="tool down")
    dead = records(run)[-1]
    [parser] = [t for t in dead.tasks if t.task == "parser"]
    assert (dead.status, parser.status, parser.error, parser.attempts) == ("running", "dead_lettered", "tool down", 1)
    run.replay("parser")
    assert [t.status for t in records(run)[-1].tasks if t.task == "parser"] == ["pending"]  # ready next


def test_a_duplicate_submit_is_answered_with_the_run_as_it_stands() -> None:
    run = Driver()
    run.submit()
    run.run_task("parser")
    before = len(records(run))
    run.send(SubmitRun(RUN, run.plan, '{"other": 1}', "key-1"))
    answers = records(run)[before:]
    assert len(answers) == 1
    assert answers[0].status == "running" and answers[0].submitted_ms == 1_000
    assert {t.task: t.status for t in answers[0].tasks}["parser"] == "succeeded"


def test_a_refused_submit_of_an_unknown_run_is_answered_as_rejected() -> None:
    run = Driver()
    plan = document_pipeline()
    broken = type(plan)(plan.name, plan.version, plan.agents[1:], plan.execution)  # validator's parser is gone
    run.send(SubmitRun(RUN, broken, "{}"))
    [answer] = records(run)
    assert answer.status == "rejected" and answer.reason is not None and "invalid plan" in answer.reason


def test_a_retired_run_answers_without_tasks_and_says_so() -> None:
    run = Driver()
    run.runner.decider.retention = Retention(finished_run_ms=1_000)  # type: ignore[attr-defined]
    run.submit()
    run.cancel()
    run.advance(2_000)  # a Tick past the retention: RunRetired
    run.send(SubmitRun(RUN, run.plan, "{}", "key-1"))
    answer = records(run)[-1]
    assert answer.retired and answer.status == "cancelled" and answer.tasks == ()
