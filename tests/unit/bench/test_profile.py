"""bench/profile.py: self and total samples per function from py-spy's collapsed stacks."""

from __future__ import annotations

from robolake.bench.profile import Profile, frame_name, package

STACKS = [
    'process 42:"python -m robolake collector";run (asyncio/runners.py:118);'
    "put_chunk (robolake/collector/app.py:329);"
    "verify_checksum (robolake/episode/checksums.py:40) 30\n",
    'process 42:"python -m robolake collector";run (asyncio/runners.py:118);'
    "put_chunk (robolake/collector/app.py:330);validate_chunk (robolake/episode/chunks.py:88) 10\n",
    'process 42:"python -m robolake collector";run (asyncio/runners.py:118);'
    "put_chunk (robolake/collector/app.py:345) 10\n",
    "not a stack line\n",
]


def test_a_frame_is_its_function_and_file_without_the_line() -> None:
    assert frame_name("put_chunk (robolake/collector/app.py:329)") == (
        "put_chunk (robolake/collector/app.py)"
    )
    assert frame_name("<module> (<string>)") == "<module> (<string>)"


def test_self_samples_are_the_leaf_total_samples_anywhere_on_the_stack() -> None:
    profile = Profile.parse(STACKS)
    assert profile.samples == 50
    put_chunk = "put_chunk (robolake/collector/app.py)"
    assert profile.self_samples["verify_checksum (robolake/episode/checksums.py)"] == 30
    assert profile.self_samples[put_chunk] == 10  # its lines add up
    assert profile.total_samples[put_chunk] == 50
    assert not any(name.startswith("process ") for name in profile.total_samples)
    table = profile.table("self", 1)
    assert "| 30 | 60.0% | `verify_checksum (robolake/episode/checksums.py)` |" in table


def test_self_samples_add_up_by_package() -> None:
    assert package("put_chunk (robolake/collector/app.py)") == "robolake"
    assert package("select (selectors.py)") == "selectors"
    profile = Profile.parse(STACKS)
    assert profile.by_package() == {"robolake": 50}
    assert "| 50 | 100.0% | `robolake` |" in profile.table("package", 5)
