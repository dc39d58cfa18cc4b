"""spec.schedules: parsed into what the cron processor is given, refused with the
field's path (exit 2 from the CLI), and absent from the version when there are none."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskplane.cli import app
from taskplane.contract.cron import ScheduleSpec
from taskplane.exceptions import ManifestError
from taskplane.manifest import load_manifest_text
from taskplane.processors.cron.calendar import CronError, next_after, parse_cron, zone

BASE = """\
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {{name: nightly}}
spec:
  agents:
    - name: a
{schedules}"""


def problems(schedules: str) -> list[tuple[str, str]]:
    with pytest.raises(ManifestError) as error:
        load_manifest_text(BASE.format(schedules=schedules))
    return [(p.path, p.reason) for p in error.value.problems]


def test_schedules_compile_to_what_the_cron_processor_is_given() -> None:
    manifest = load_manifest_text(BASE.format(schedules="""\
  schedules:
    - name: nightly-report
      cron: "30 2 * * 1-5"
      timeZone: Europe/Paris
      input: {folder: reports, days: 1}
      concurrencyPolicy: forbid
      startingDeadline: 10m
    - {name: hourly, cron: "@hourly"}
"""))
    assert [s.to_spec() for s in manifest.spec.schedules] == [
        ScheduleSpec("nightly-report", "30 2 * * 1-5", "Europe/Paris", '{"days": 1, "folder": "reports"}',
                     "forbid", 600_000),
        ScheduleSpec("hourly", "@hourly", "UTC", "null", "allow", None),
    ]


def test_no_schedules_leave_the_version_as_it_was() -> None:
    without = load_manifest_text(BASE.format(schedules=""))
    empty = load_manifest_text(BASE.format(schedules="  schedules: []\n"))
    assert "schedules" not in without.canonical_json() and without.version() == empty.version()


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("cron", '"61 * * * *"', "minute: 61 is out of range 0-59"),
    ("cron", '"* * * *"', "expected 5 fields"),
    ("cron", '"*/0 * * * *"', "minute: bad step '0'"),
    ("cron", '"0 0 * foo *"', "month: 'foo' is not a number or a name"),
    ("cron", '"5-1 * * * *"', "minute: range '5-1' runs backwards"),
    ("timeZone", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ("timeZone", "../etc/passwd", "unknown time zone"),
    ("concurrencyPolicy", "sometimes", "unsupported value 'sometimes'; expected 'forbid', 'allow' or 'replace'"),
    ("startingDeadline", "soon", "bad duration 'soon'"),
    ("startingDeadline", "10ms", "must be at least 1s"),
    ("startingDeadline", "99999999999999999999h", "longer than 876000h (100 years)"),  # validated, apply failed
    ("startingDeadline", "9" * 400, "longer than 876000h (100 years)"),  # OverflowError: a traceback
    ("name", "Nightly_Report", "invalid schedule name 'Nightly_Report'"),
])
def test_a_bad_field_is_refused_with_its_path(field: str, value: str, reason: str) -> None:
    entries = {"name": "n", "cron": '"* * * * *"', field: value}
    body = "\n".join(f"      {k}: {v}" for k, v in entries.items())
    found = problems(f"  schedules:\n    - {body.strip()}\n")
    assert len(found) == 1 and found[0][0] == f"spec.schedules[0].{field}" and reason in found[0][1], found


def test_repeated_names_and_expressions_that_never_fire_are_refused() -> None:
    assert problems("""\
  schedules:
    - {name: a, cron: "0 0 30 2 *"}
    - {name: a, cron: "@daily"}
    - {name: b, cron: "@daily", timezone: UTC}
""") == [("spec.schedules[2].timezone", "unknown field (did you mean timeZone?)")]
    assert problems("""\
  schedules:
    - {name: a, cron: "0 0 30 2 *"}
    - {name: a, cron: "@daily"}
""") == [("spec.schedules[0].cron", "'0 0 30 2 *' never fires"), ("spec.schedules[1].name", "duplicate schedule 'a'")]


def test_the_cli_exits_2_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BASE.format(schedules='  schedules:\n    - {name: a, cron: "* * * * *", timeZone: Nowhere}\n'))
    result = CliRunner().invoke(app, ["validate", "-f", str(path)])
    assert result.exit_code == 2
    assert "spec.schedules[0].timeZone: unknown time zone 'Nowhere'" in result.output


def test_macros_names_and_both_day_fields() -> None:
    utc = zone("UTC")
    assert parse_cron("@weekly") == parse_cron("0 0 * * sun") == parse_cron("0 0 * * 7")
    assert parse_cron("0 0 * JAN,feb mon-fri").months == frozenset({1, 2})
    # day 13 OR a Friday (both restricted): 2026-02-13 is a Friday, 2026-02-06 is one too
    after = next_after(parse_cron("0 0 13 * 5"), utc, 1_769_904_000_000)  # 2026-02-01T00:00Z
    assert after == 1_770_336_000_000  # 2026-02-06T00:00Z, a Friday before the 13th
    with pytest.raises(CronError):
        parse_cron("* * * * * * *")
