"""Package versions, host matching, plugins and environment merging."""

from __future__ import annotations

import pytest

from prefect_conductor.conductor_cloud.catalog import fixture_catalog
from prefect_conductor.conductor_cloud.errors import PackageError
from prefect_conductor.conductor_cloud.job import EnvironmentVariable
from prefect_conductor.conductor_cloud.packages import (
    EnvironmentMerge,
    PackageCatalog,
    merge_environment,
    version_key,
)


@pytest.fixture
def packages() -> PackageCatalog:
    return fixture_catalog().package_catalog()


def test_versions_compare_as_numbers() -> None:
    assert version_key("5.0.10") > version_key("5.0.9")
    assert version_key("4.0.SP12") > version_key("4.0.SP3")
    assert version_key("2024.1") > version_key("2023.10")


def test_hosts_newest_first_and_named(packages: PackageCatalog) -> None:
    names = [p.name for p in packages.hosts() if p.platform == "linux"]
    assert names.index("jobs 5.0.10 linux") < names.index("jobs 5.0.9 linux")
    assert names[0] == "jobs 6.0.1 linux"
    assert all(p.product == "jobs" for p in packages.hosts())


def test_host_matching(packages: PackageCatalog) -> None:
    assert packages.match_host("5.0.10").name == "jobs 5.0.10 linux"
    assert packages.match_host("5.0.12").name == "jobs 5.0.10 linux"  # nearest older, same major
    assert packages.match_host("6.0.0").name == "jobs 6.0.1 linux"  # only newer in that major
    assert packages.match_host("5.0.10", platform="windows").platform == "windows"
    with pytest.raises(PackageError, match="host_version: no jobs package for version '9.1'"):
        packages.match_host("9.1")


def test_unknown_names_suggest(packages: PackageCatalog) -> None:
    with pytest.raises(PackageError, match="did you mean 'jobs 5.0.10 linux'"):
        packages.find("jobs 5.0.10 linx")


def test_plugins_resolve_under_their_host_even_when_names_repeat(packages: PackageCatalog) -> None:
    resolved = packages.resolve(None, "5.0.10", ["redshift-jobs 3.0.62 linux"])
    plugin = resolved.plugins[0]
    assert plugin.package_id in resolved.host.plugins
    assert resolved.ids == [resolved.host.package_id, plugin.package_id]
    with pytest.raises(
        PackageError,
        match=r"plugin_packages\[0\]: 'redshift-jobs 3.5.1 linux' is not a plugin of 'jobs 5.0.9",
    ):
        packages.resolve("jobs 5.0.9 linux", None, ["redshift-jobs 3.5.1 linux"])
    with pytest.raises(PackageError, match="is a plugin, not a host"):
        packages.resolve("redshift-jobs 3.5.1 linux", None, [])
    with pytest.raises(PackageError, match="host_package: no host package"):
        packages.resolve(None, None, [])


def test_unknown_platform_records_are_skipped() -> None:
    catalog = PackageCatalog(
        [{"package_id": "1", "product": "jobs", "major_version": "5", "platform": "solaris"}]
    )
    assert catalog.packages == []


def test_environment_merge_order_and_join(packages: PackageCatalog) -> None:
    resolved = packages.resolve(None, "5.0.10", ["redshift-jobs 3.0.62 linux"])
    env = merge_environment(
        resolved,
        fixture_catalog().extra_environment,
        [
            EnvironmentVariable(name="PATH", value="/first", merge_policy="prepend"),
            EnvironmentVariable(name="SHOT", value="010", merge_policy="exclusive"),
        ],
    )
    assert env["PATH"].split(":") == [
        "/first",
        "/opt/jobs/5.0.10/bin",
        "/opt/redshift-jobs/3.0.62/bin",
    ]
    assert env["STUDIO_ROOT"] == "/mnt/studio" and env["SHOT"] == "010"
    assert env["JOBS_LICENSE"] == "conductor_license:40500"


def test_windows_joins_with_semicolons() -> None:
    merge = EnvironmentMerge("windows")
    merge.extend([{"name": "PATH", "value": "C:/a", "merge_policy": "append"}], source="a")
    merge.extend([{"name": "PATH", "value": "C:/b", "merge_policy": "append"}], source="b")
    assert merge.as_dict() == {"PATH": "C:/a;C:/b"}


@pytest.mark.parametrize(("first", "second"), [("exclusive", "append"), ("prepend", "exclusive")])
def test_conflicts_name_both_sources(first: str, second: str) -> None:
    merge = EnvironmentMerge()
    merge.extend([{"name": "X", "value": "", "merge_policy": first}], source="pkg")
    with pytest.raises(PackageError) as caught:
        merge.extend([{"name": "X", "value": "v", "merge_policy": second}], source="environment[1]")
    assert str(caught.value) == (
        f"environment[1]: X is {second} in 'environment[1]' but {first} in 'pkg'; make them agree"
    )


def test_unknown_policy() -> None:
    with pytest.raises(PackageError, match="merge policy 'replace'"):
        EnvironmentMerge().extend([{"name": "X", "value": "v", "merge_policy": "replace"}], "s")
