"""The cron processor in the simulated world: the real cron decider and its calendar hints
(``processors/cron/app.py``) on a ``Processor``, ticked at log time, its fired slots'
``SubmitRun`` sent to the orchestrator like a client's.

Faults, as the rest of the world takes them: ``abort`` (a transaction aborts, or, on a
Tick, commits and loses its reply: the memory rewinds and the slot fires a second time
under the same key), ``crash`` (the process dies in a transaction, committed or not, and
is back 1 s-10 min later with its states folded from what it recorded: missed slots
fire on recovery or are skipped past ``startingDeadline``), ``duplicate`` (a slot's
``SubmitRun`` reaches the orchestrator twice, a run's end notice the cron processor). On half the seeds the schedules are
paused halfway and resumed a while later, as ``taskplane schedules pause|resume`` does.
The invariants on what it recorded are in ``cron_checks.py``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from taskplane.contract.cron import (
    ApplySchedules,
    CronTick,
    PauseSchedule,
    ResumeSchedule,
    ScheduleSpec,
    SlotFired,
    SlotsSkipped,
)
from taskplane.contract.decider import Output
from taskplane.contract.messages import SubmitRun
from taskplane.processors.cron.app import CronHints, next_slot
from taskplane.processors.cron.decider import CronDecider
from taskplane.testing.simulation.faults import unit
from taskplane.testing.simulation.processor import LOST_REPLY, Crash, Processor
from taskplane.testing.simulation.result import SimEvent

if TYPE_CHECKING:
    from taskplane.testing.simulation.world import World

# A system's cron schedules run until this many slots (or as many as the runs asked for)
# fired or were skipped, then are paused: a schedule never ends by itself.
CRON_SLOTS = 20
DOWN_MS = (1_000, 600_000)  # a crashed cron processor is back after this long
PAUSE_MS = (60_000, 1_200_000)  # a paused schedule is resumed after this long
BY = "simulate"
WATCH_CAP_MS = 23 * 3_600_000  # within the world's horizon


class SimCron:
    def __init__(self, world: World) -> None:
        self.world = world
        self.faults = world.faults
        self.events: list[SimEvent] = []
        self.decider = CronDecider()
        self.processor = Processor("cron", self.decider, world.broker, self._route, self._record, self._aborts,
                                   CronHints(), self._crashes, self._restore)
        self.schedules: tuple[ScheduleSpec, ...] = ()
        self.slots = 0  # slots to decide before the final pause
        self.decided: set[tuple[str, int]] = set()  # (schedule, slot) fired or skipped
        self.skipped = 0  # skipped slots whose times the event does not list
        self.pauses = 0
        # On half the seeds the schedules are paused halfway and resumed later.
        self.resumes = unit(self.faults.seed, "cron:pause-resume") < 0.5

    def apply(self, schedules: tuple[ScheduleSpec, ...], slots: int) -> None:
        if not schedules:
            return
        self.schedules, self.slots = schedules, slots
        plan = self.world.plan
        self.world.broker.deliver(0, self.processor.command, plan.name,
                                  ApplySchedules(plan.name, plan.version, plan, schedules), 0)
        # A schedule that stops deciding slots (a lost timer, a resume that does not
        # resume) is paused for good all the same, well after its slots should have been
        # decided: the slots it owed until then are checked (cron_checks.py).
        at = 0
        for _ in range(2 * slots):
            following = next_slot(schedules[0], at)
            if following is None or following > WATCH_CAP_MS:
                break
            at = following
        self.world.loop.at(min(at + PAUSE_MS[1] + DOWN_MS[1], WATCH_CAP_MS), self._watchdog, plan.name)

    def _watchdog(self, key: str) -> None:
        if self.pauses < 2:
            self._pause(self.world.loop.now, key)
            self.pauses = 2

    # ------------------------------------------------------------ faults

    def _aborts(self, key: str, command: Any) -> bool | str:
        if "abort" not in self.faults.rates:
            return False
        now = self.world.loop.now
        if isinstance(command, CronTick):  # by the slot it fires, not the tick's time
            due = self.decider.next_deadline(self.processor.states.get(key))
            coordinate = self.world.coordinate(key, f"cron-tick@{due}", None)
            return LOST_REPLY if self.faults.fires("abort", coordinate, now) else False
        return self.faults.fires("abort", self.world.coordinate(key, f"cron:{type(command).__name__}", None), now)

    def _crashes(self, key: str, command: Any) -> Crash | None:
        if "crash" not in self.faults.rates:
            return None
        coordinate = self.world.coordinate(key, f"cron-crash:{type(command).__name__}", None)
        if not self.faults.fires("crash", coordinate, self.world.loop.now):
            return None
        committed = unit(self.faults.seed, f"crash:{coordinate}#committed") < 0.5
        return Crash(committed, round(self.faults.draw("crash", coordinate, *DOWN_MS)))

    def _restore(self) -> dict[str, Any]:
        """A restarted processor's states: the fold of the events it recorded (its
        changelog holds the same; the decisions made since the last one are the log's)."""
        states: dict[str, Any] = {}
        for record in self.events:
            states[record.run_id] = self.decider.evolve(states.get(record.run_id), record.event)
        return states

    # ------------------------------------------------------------ outputs

    def notice(self, output: Output, at_ms: int) -> None:
        """The orchestrator's ``ScheduledRunEnded``, delivered twice on a ``duplicate``."""
        self.world.broker.deliver(at_ms, self.processor.command, output.key, output.value, at_ms)
        if self.faults.fires("duplicate", f"{output.key}/cron-notice:{getattr(output.value, 'run_id', '')}",
                             self.world.loop.now):
            self.world.broker.redeliver(at_ms, self.processor.command, output.key, output.value, at_ms)

    def _record(self, at_ms: int, key: str, event: Any) -> None:
        self.events.append(SimEvent(at_ms, key, event))
        before = len(self.decided) + self.skipped
        if isinstance(event, SlotFired):
            self.decided.add((event.schedule, event.slot_ms))
        elif isinstance(event, SlotsSkipped):
            if event.first_slot_ms is None or event.count > 2:
                self.skipped += event.count
            else:
                self.decided.update((event.schedule, s) for s in {event.first_slot_ms, event.last_slot_ms})
        count = len(self.decided) + self.skipped
        if count == before:
            return
        now = self.world.loop.now  # not the decision's log time: a Tick read again is late
        if self.resumes and self.pauses == 0 and count * 2 >= self.slots:
            self._pause(now, key)
            gap = round(self.faults.draw("cron", f"{key}/paused", *PAUSE_MS))
            for spec in self.schedules:
                self.world.broker.deliver(now + gap, self.processor.command, key,
                                          ResumeSchedule(key, spec.name, BY), now + gap)
        elif self.pauses < 2 and count >= self.slots:
            self._pause(now, key)
            self.pauses = 2

    def _pause(self, at_ms: int, key: str) -> None:
        self.pauses += 1
        for spec in self.schedules:
            self.world.broker.deliver(at_ms, self.processor.command, key, PauseSchedule(key, spec.name, BY), at_ms)

    def _route(self, output: Output, at_ms: int) -> None:
        if output.topic != "commands":
            return
        world = self.world
        submit = output.value
        if isinstance(submit, SubmitRun) and submit.run_id not in world.run_index:
            world.run_index[submit.run_id] = len(world.run_index)
            world.inputs[submit.run_id] = json.loads(submit.input)
            world.open_runs += 1
        world.broker.deliver(at_ms, world.orchestrator.command, output.key, submit, at_ms)
        if isinstance(submit, SubmitRun) and self.faults.fires("duplicate", f"{output.key}/cron-submit",
                                                                world.loop.now):
            world.broker.redeliver(at_ms, world.orchestrator.command, output.key, submit, at_ms)
