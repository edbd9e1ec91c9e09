"""Every periodic task beat sends is named in the operators' docs (docs/deployment.md, "Beat entries"): an
operator reading them knows what runs on a schedule, and a new entry that is not documented fails here."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_beat_entry_is_in_the_deployment_docs() -> None:
    from django.conf import settings

    docs = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    section = docs[docs.index("Beat entries"):]
    section = section[:section.index("\n\n")]
    entries = list(settings.CELERY_BEAT_SCHEDULE)
    assert len(entries) >= 5  # the schedule was read
    assert [name for name in entries if f"`{name}`" not in section] == []
