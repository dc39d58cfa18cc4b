"""The dispatcher's changelog as a head and one record per offer (processors/dispatch/
parts.py): the records a run of batches writes, joined again, are the live state, and no
record grows with the backlog."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from taskplane.contract.decider import InMemoryRunner, part_key
from taskplane.contract.scheduling import DispatchNotice, DispatchOffer, DispatchTick, WorkReleased
from taskplane.processors.dispatch.decider import DispatchDecider
from taskplane.streams.batch import state_meta
from taskplane.streams.restore import stored_states
from taskplane.streams.serde import Serde

SYSTEM = "sys"
SERDE = Serde()


def offer(run: str, tenant: str, priority: int = 3, window: int = 2, cap: int = 0) -> DispatchOffer:
    return DispatchOffer(SYSTEM, run, "t", 1, tenant, priority, 1, cap, 1_000, window, 5_000)


class Changelog:
    """What the runtime keeps on the compacted topic: each changelog key's last value."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.largest = 0

    def commit(self, before: Any, after: Any) -> None:
        for part, stored in DispatchDecider().changed_parts(before, after):
            name = part_key(SYSTEM, part)
            if stored is None:
                self.values.pop(name, None)
            else:
                value = SERDE.encode(stored, state_meta(name))
                self.largest = max(self.largest, len(value))
                self.values[name] = value

    def restored(self) -> Any:
        return stored_states(DispatchDecider(), SERDE, self.values).get(SYSTEM)


COMMANDS = st.lists(st.tuples(st.sampled_from(["offer", "take", "done", "drop", "tick", "commit"]),
                              st.integers(0, 3), st.integers(1, 5)), min_size=1, max_size=150)


@settings(max_examples=80, deadline=None)
@given(commands=COMMANDS)
def test_the_records_of_every_commit_join_to_the_live_state(commands: list[tuple[str, int, int]]) -> None:
    r = InMemoryRunner.of(DispatchDecider())
    log = Changelog()
    committed: Any = None  # the state as the last commit left it: what the changelog holds
    for i, (kind, who, priority) in enumerate(commands):
        at = 10 * i
        state = r.states.get(SYSTEM)
        releases = sorted(state.released.values(), key=lambda item: item.released_ms) if state else []
        pick = releases[-1 - who % len(releases)] if releases else None
        if kind == "offer":
            r.handle(SYSTEM, offer(f"r{i}", f"t{who}", priority, cap=who), at)
        elif kind in ("take", "done") and pick is not None:
            r.handle(SYSTEM, DispatchNotice(SYSTEM, pick.run_id, pick.task, pick.attempt,
                                            "taken" if kind == "take" else "done"), at)
        elif kind == "drop":
            r.handle(SYSTEM, DispatchNotice(SYSTEM, f"r{max(0, i - who - 1)}", "", 0, "dropped"), at)
        elif kind == "tick":
            r.handle(SYSTEM, DispatchTick(at + 10_000), at)
        elif kind == "commit":  # a batch ends: its changes go to the changelog
            live = r.states.get(SYSTEM)
            log.commit(committed, live)
            committed = live
            assert log.restored() == live
    live = r.states.get(SYSTEM)
    log.commit(committed, live)
    assert log.restored() == live


def test_no_record_grows_with_the_backlog() -> None:
    r = InMemoryRunner.of(DispatchDecider())
    log = Changelog()
    committed: Any = None
    for i in range(3_000):
        r.handle(SYSTEM, offer(f"run-{i:05d}", "flood" if i % 10 else f"small{i % 7}", window=32), i)
        if i % 100 == 99:
            log.commit(committed, r.states[SYSTEM])
            committed = r.states[SYSTEM]
    for event in [e for _k, e in r.log if isinstance(e, WorkReleased)][:20]:
        r.handle(SYSTEM, DispatchNotice(SYSTEM, event.run_id, event.task, event.attempt, "done"), 5_000)
    log.commit(committed, r.states[SYSTEM])
    assert sum(len(q) for q in r.states[SYSTEM].queues.values()) > 2_900
    assert log.largest < 400  # the head and one offer, whatever the backlog
    assert len(log.values) > 2_900
    assert log.restored() == r.states[SYSTEM]
    whole = SERDE.encode(r.states[SYSTEM], state_meta(SYSTEM))  # what one record per system was
    assert len(whole) > 50 * log.largest


def test_a_head_written_before_the_split_is_rewritten_in_full_on_restore() -> None:
    """A changelog from before the split holds a system's queues inside its one record;
    restored, the next commit must write them out as parts (streams/restore.py), or a
    later diff against the joined state would drop them from the changelog."""
    from taskplane.streams.restore import stale_layouts

    r = InMemoryRunner.of(DispatchDecider())
    for i in range(4):
        r.handle(SYSTEM, offer(f"r{i}", "a", window=1), i)
    live = r.states[SYSTEM]
    assert live is not None and any(live.queues.values())
    legacy = {SYSTEM: SERDE.encode(live, state_meta(SYSTEM))}  # queues inline, no parts
    restored = stored_states(DispatchDecider(), SERDE, legacy)
    assert restored[SYSTEM] == live
    assert stale_layouts(DispatchDecider(), legacy, restored) == {SYSTEM}
    log = Changelog()
    log.commit(None, live)  # the full write an unsaved key gets
    assert stale_layouts(DispatchDecider(), log.values, stored_states(DispatchDecider(), SERDE, log.values)) == set()
    assert log.restored() == live
