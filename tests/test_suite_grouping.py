"""The suite's own scheduling: under `make test` (pytest-xdist, `--dist loadgroup`) the tests
marked `xdist_group` must really run together on one worker, or each worker starts its own
Prefect server and demo (minutes of CPU). pytest 9.2 silently broke xdist 3.8's grouping."""

from __future__ import annotations

import pytest


@pytest.mark.xdist_group("suite-grouping")
def test_grouped_tests_are_grouped_under_loadgroup(request: pytest.FixtureRequest) -> None:
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("grouping applies to `--dist loadgroup` (make test) only")
    grouped = [item for item in request.session.items if item.get_closest_marker("xdist_group")]
    assert request.node in grouped
    ungrouped = [item.nodeid for item in grouped if "@" not in item.nodeid]
    assert not ungrouped, f"xdist did not group these (pytest/xdist versions?): {ungrouped[:3]}"
