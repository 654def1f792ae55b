"""The test infrastructure: tier marking, the fast-tier guard, package checks, eventually()."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import system_packages, tiers
from tests.eventually import eventually


class FakeItem:
    """Just enough of a pytest item for the tier functions."""

    def __init__(self, *fixturenames: str) -> None:
        self.nodeid = "tests/test_x.py::test_x"
        self.fixturenames = list(fixturenames)
        self.markers: list[Any] = []

    def add_marker(self, marker: Any) -> None:
        self.markers.append(marker)

    def get_closest_marker(self, name: str) -> Any:
        return next((m for m in self.markers if m.name == name), None)


def test_a_test_is_slow_exactly_when_it_uses_a_slow_fixture() -> None:
    items = [FakeItem("tmp_path", name) for name in sorted(tiers.SLOW_FIXTURES)]
    fast = FakeItem("tmp_path", "sandbox", "conductor_env", "monkeypatch")
    tiers.mark_slow_tests([*items, fast])  # type: ignore[list-item]
    assert all(tiers.is_slow(item) for item in items)  # type: ignore[arg-type]
    assert not tiers.is_slow(fast)  # type: ignore[arg-type]


def test_tests_on_a_shared_prefect_server_share_an_xdist_group() -> None:
    backend, server, other = FakeItem("prefect_backend"), FakeItem("prefect_server"), FakeItem()
    tiers.group_by_server([backend, server, other])  # type: ignore[list-item]
    assert [m.args for m in backend.markers] == [("prefect_backend",)]
    assert [m.args for m in server.markers] == [("prefect_server",)]
    assert other.markers == []


def test_this_very_test_is_in_the_tier_its_fixtures_say(request: pytest.FixtureRequest) -> None:
    assert not tiers.is_slow(request.node)


def test_the_guard_fails_a_fast_test_that_starts_a_process(cli_subprocess: list[str]) -> None:
    guarded = tiers.guard_fast_test(FakeItem())  # type: ignore[arg-type]
    next(guarded)
    subprocess.run(["true"], check=True)
    with pytest.raises(
        pytest.fail.Exception, match=r"started a subprocess \(true\).*cli_subprocess"
    ):
        next(guarded)


def test_the_guard_lets_a_fast_test_that_starts_nothing_pass() -> None:
    guarded = tiers.guard_fast_test(FakeItem())  # type: ignore[arg-type]
    next(guarded)
    with pytest.raises(StopIteration):
        next(guarded)


def test_a_missing_package_skips_naming_it_and_its_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        system_packages.missing("chromium")
    assert str(skipped.value) == (
        "needs Debian's chromium, not installed: apt-get install -y chromium"
    )


def test_under_ci_a_missing_package_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y postgresql"):
        system_packages.missing("postgresql")


def test_the_package_checks_look_where_debian_installs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(system_packages, "CHROMIUM", tmp_path / "chromium")
    monkeypatch.setattr(system_packages, "POSTGRES_ROOT", tmp_path / "postgresql")
    with pytest.raises(pytest.skip.Exception, match="chromium"):
        system_packages.chromium()
    with pytest.raises(pytest.skip.Exception, match="postgresql"):
        system_packages.postgresql()
    (tmp_path / "chromium").write_text("")
    for version in ("9.6", "15", "13"):
        (tmp_path / "postgresql" / version / "bin").mkdir(parents=True)
        (tmp_path / "postgresql" / version / "bin" / "initdb").write_text("")
    assert system_packages.chromium() == tmp_path / "chromium"
    assert system_packages.postgresql() == tmp_path / "postgresql" / "15" / "bin"


def test_eventually_returns_the_first_truthy_answer() -> None:
    answers = iter([None, [], 0, ["done"]])
    assert eventually(lambda: next(answers), what="done", interval=0) == ["done"]


def test_eventually_names_what_never_happened_and_the_last_answer() -> None:
    with pytest.raises(
        AssertionError, match=r"^the job stored: not so after 0.05 s \(last: \[\]\)"
    ):
        eventually(list, what="the job stored", timeout=0.05, interval=0.01)


def test_eventually_asks_again_after_an_ignored_error_only() -> None:
    calls: list[int] = []

    def flaky() -> bool:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not up yet")
        return True

    assert eventually(flaky, what="up", interval=0, ignoring=(ConnectionError,))

    def broken() -> bool:
        raise KeyError("a bug, not a wait")

    with pytest.raises(KeyError):
        eventually(broken, what="never asked twice", ignoring=(ConnectionError,))


def test_the_node_id_is_where_xdist_loadgroup_writes_the_group(
    request: pytest.FixtureRequest,
) -> None:
    """``--dist loadgroup`` schedules by the node id after appending ``@group`` to the item's
    ``_nodeid``; pytest 9.2 reads the id from elsewhere, and the groups silently stop working."""
    node = request.node
    saved = node._nodeid
    node._nodeid = f"{saved}@probe"
    try:
        assert node.nodeid == f"{saved}@probe"
    finally:
        node._nodeid = saved
