"""Which files of a pinned snapshot an episode's read opens: its date, inside its id bounds."""

from __future__ import annotations

from robolake.dataset.storage import PlannedFile

EPISODE = "019bb0f7-f9c0-73aa-8000-000000000001"
DAYS = 20465


def test_a_file_may_hold_an_episode_of_its_date_inside_its_bounds() -> None:
    # Iceberg truncates string bounds to 16 characters: a prefix below, an incremented one above.
    inside = PlannedFile("b/k", DAYS, "019bb0f7-f9c0-73", "019bb0f7-f9c0-74")
    assert inside.may_hold(EPISODE, DAYS)
    assert not inside.may_hold(EPISODE, DAYS + 1)
    assert not PlannedFile("b/k", DAYS, "019bb0f7-f9c0-74", None).may_hold(EPISODE, DAYS)
    assert not PlannedFile("b/k", DAYS, None, "019bb0f7-f9c0-72").may_hold(EPISODE, DAYS)
    # Without bounds or a date, nothing can be ruled out.
    assert PlannedFile("b/k", None, None, None).may_hold(EPISODE, DAYS)
    assert PlannedFile("b/k", DAYS, None, None).may_hold(EPISODE, None)
