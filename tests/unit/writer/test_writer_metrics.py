"""The writer's labelled series exist from the start, so tests and alerts read real zeros."""

from __future__ import annotations

from robolake.episode.errors import REASONS
from robolake.writer.metrics import FLUSH_REASONS, RECORD_OUTCOMES, WriterMetrics


def test_every_closed_label_series_starts_at_zero() -> None:
    registry = WriterMetrics().registry
    series = {
        "robolake_writer_records_total": ("outcome", RECORD_OUTCOMES),
        "robolake_writer_flushes_total": ("reason", FLUSH_REASONS),
        "robolake_writer_dead_letters_total": ("reason", REASONS),
    }
    for name, (label, values) in series.items():
        for value in values:
            assert registry.get_sample_value(name, {label: value}) == 0.0, (name, value)
    assert RECORD_OUTCOMES == ("stored", "duplicate", "dead_letter")
