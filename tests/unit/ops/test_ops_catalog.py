"""docs/metrics.md equals what the metric definitions say, and every label is bounded."""

from __future__ import annotations

from pathlib import Path

from robolake.ops.catalog import FORBIDDEN_LABELS, LABEL_BOUNDS, SERVICES, entries, render

CATALOG = Path(__file__).resolve().parents[3] / "docs" / "metrics.md"


def test_catalog_page_matches_the_code() -> None:
    assert CATALOG.read_text() == render(), (
        "docs/metrics.md is out of date; run `robolake metrics catalog --output docs/metrics.md`"
    )


def test_every_label_is_documented_as_bounded_and_none_is_forbidden() -> None:
    for entry in entries():
        for label in entry.labels:
            assert label in LABEL_BOUNDS, f"{entry.name}: say why label {label!r} is bounded"
            assert label not in FORBIDDEN_LABELS, f"{entry.name}: {label!r} is unbounded"


def test_names_are_unique_and_prefixed_by_their_service() -> None:
    found = entries()
    names = [e.name for e in found]
    assert len(names) == len(set(names))
    prefixes = {
        "collector": ("robolake_collector_",),
        "writer": ("robolake_writer_",),
        "exporter": ("robolake_dataset_", "robolake_exporter_"),
        "maintenance": ("robolake_maintenance_",),
    }
    assert set(prefixes) == set(SERVICES)
    for entry in found:
        assert entry.name.startswith(prefixes[entry.service]), entry
        assert entry.help, f"{entry.name} has no help text"
