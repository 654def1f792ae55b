"""Package versions, names, host matching, plugins and environment merging."""

from __future__ import annotations

from typing import Any

import pytest

from prefect_conductor.conductor_cloud.errors import PackageError
from prefect_conductor.conductor_cloud.job.environment import (
    EnvEntry,
    EnvironmentMerge,
    merge_environment,
)
from prefect_conductor.conductor_cloud.job.model import EnvironmentVariable
from prefect_conductor.conductor_cloud.job.packages import (
    Package,
    PackageCatalog,
    ResolvedPackages,
    version_key,
)
from prefect_conductor.sandbox.fixture_catalog import fixture_catalog, fixture_records

JOBS_LINUX = [
    "jobs 6.0.1 linux",
    "jobs 5.0.10 linux",
    "jobs 5.0.9 linux",
    "jobs 5.0.SP2 linux",
    "jobs 4.0.SP12 linux",
]


@pytest.fixture
def packages() -> PackageCatalog:
    return fixture_catalog().package_catalog()


def record(package_id: str, product: str, version: str, **fields: Any) -> dict[str, Any]:
    """A package record as the API sends it, version parts split from ``version``."""
    parts = [*version.split("."), "", "", "", ""][:4]
    names = ("major_version", "minor_version", "release_version", "build_version")
    return {
        "package_id": package_id,
        "product": product,
        "platform": "linux",
        "plugin_host_product": "",
        "plugin_host_version": "",
        "plugins": [],
        "environment": [],
        **dict(zip(names, parts, strict=True)),
        **fields,
    }


# versions and names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("newer", "older"),
    [
        ("5.0.10", "5.0.9"),
        ("4.0.SP12", "4.0.SP3"),
        ("2024.1", "2023.10"),
        ("5.0.9", "5.0.SP2"),  # a word sorts before a number at the same place
        ("5.0.1", "5.0"),
        ("10", "9.9.9"),
    ],
)
def test_versions_compare_as_numbers(newer: str, older: str) -> None:
    assert version_key(newer) > version_key(older)


def test_text_order_is_wrong_and_ours_is_not() -> None:
    assert sorted(["5.0.9", "5.0.10"]) == ["5.0.10", "5.0.9"]
    assert sorted(["5.0.9", "5.0.10"], key=version_key) == ["5.0.9", "5.0.10"]
    assert version_key("5.0 SP12") == version_key("5.0.SP12") == version_key("5.0.sp12")


def test_names_join_non_empty_parts() -> None:
    maya = Package.model_validate(record("a", "maya", "2022.SP3"))
    blender = Package.model_validate(record("b", "blender", "1.0.2.3", platform="windows"))
    bare = Package.model_validate(record("c", "tool", ""))
    assert maya.name == "maya 2022.SP3 linux"
    assert blender.name == "blender 1.0.2.3 windows"
    assert bare.name == "tool linux"


def test_records_are_read_leniently_and_frozen() -> None:
    package = Package.model_validate(
        record(
            "d",
            "jobs",
            "",
            major_version=5,
            minor_version=None,
            plugins=None,
            environment=None,
            time_updated="2026-01-01",  # a key we do not model
        )
    )
    assert package.name == "jobs 5 linux" and package.plugins == [] and package.is_host
    with pytest.raises(ValueError, match="frozen"):
        package.product = "other"


def test_bad_records_are_skipped_and_said() -> None:
    garbage: list[Any] = ["not a record"]
    catalog = PackageCatalog(
        [
            record("1", "jobs", "5.0.1", platform="solaris"),
            record("2", "jobs", "5.0.2", platform=None),
            {"product": "jobs", "platform": "linux"},
            *garbage,
            record("3", "jobs", "5.0.3"),
            record("3", "jobs", "5.0.4"),
        ]
    )
    assert [p.name for p in catalog.packages] == ["jobs 5.0.3 linux"]
    assert catalog.skipped == [
        "packages[0] (jobs): unknown platform 'solaris'",
        "packages[1] (jobs): unknown platform None",
        "packages[2] (jobs): package_id: Field required",
        "packages[3]: not a record",
        "packages[5]: id 3 repeats; kept the first",
    ]


def test_only_the_asked_platforms_are_kept() -> None:
    records = fixture_records()["packages"]
    assert all(p.platform == "linux" for p in PackageCatalog(records).packages)
    both = PackageCatalog(records, platforms={"linux", "windows"})
    assert [p.name for p in both.hosts(platform="windows")] == ["jobs 5.0.10 windows"]


# hosts and lookups --------------------------------------------------------------------------


def test_hosts_newest_first_and_only_the_product(packages: PackageCatalog) -> None:
    assert [p.name for p in packages.hosts(platform="linux")] == JOBS_LINUX
    assert [p.name for p in packages.hosts("maya-io")] == ["maya-io 2024.1 linux"]
    assert all(p.product == "jobs" and p.is_host for p in packages.hosts())


def test_find_is_exact_and_suggests(packages: PackageCatalog) -> None:
    assert packages.find("  jobs  5.0.10 linux ").package_id == "5a2a42f91237cc183c5babde"
    assert packages.find("jobs 5.0.10", platform="linux").name == "jobs 5.0.10 linux"
    with pytest.raises(PackageError) as caught:
        packages.find("jobs 5.0.10 linx")
    assert str(caught.value).startswith(
        "host_package: unknown package 'jobs 5.0.10 linx'; did you mean 'jobs 5.0.10 linux'"
    )
    with pytest.raises(PackageError) as caught:
        packages.find("jobs 1 linux", field="x")
    assert str(
        caught.value
    ) == (  # not a typo: the product's packages, platform's first, newest first
        "x: unknown package 'jobs 1 linux'; known jobs packages: 'jobs 6.0.1 linux',"
        " 'jobs 5.0.10 linux', 'jobs 5.0.9 linux', 'jobs 5.0.SP2 linux', 'jobs 4.0.SP12 linux',"
        " 'jobs 5.0.10 windows'"
    )
    with pytest.raises(PackageError, match="'jbos 5.0.10 linux'; did you mean 'jobs 5.0.10 linux'"):
        packages.find("jbos 5.0.10 linux")


def test_duplicate_plugin_names_resolve_under_their_host(packages: PackageCatalog) -> None:
    name = "redshift-jobs 3.0.62 linux"
    assert len({p.package_id for p in packages.find_all(name)}) == 3
    chosen = set()
    for host in ("jobs 5.0.9 linux", "jobs 5.0.10 linux", "jobs 6.0.1 linux"):
        resolved = packages.resolve(host, None, [name])
        assert resolved.plugins[0].package_id in resolved.host.plugins
        chosen.add(resolved.plugins[0].package_id)
    assert len(chosen) == 3


def test_duplicate_host_names_pick_the_one_carrying_the_plugins() -> None:
    catalog = PackageCatalog(
        [
            record("h1", "jobs", "5.0.10", plugins=["p1"]),
            record("h2", "jobs", "5.0.10", plugins=["p2"]),
            record("p1", "arnold-jobs", "7.1", plugin_host_product="jobs", plugin_host_version="5"),
            record("p2", "octane-jobs", "2", plugin_host_product="jobs", plugin_host_version="5"),
        ]
    )
    assert catalog.resolve("jobs 5.0.10 linux", None, []).ids == ["h1"]
    assert catalog.resolve("jobs 5.0.10 linux", None, ["octane-jobs 2 linux"]).ids == ["h2", "p2"]
    assert catalog.resolve(None, "5.0.10", ["octane-jobs 2 linux"]).ids == ["h2", "p2"]
    with pytest.raises(PackageError, match=r"plugin_packages\[1\]: 'octane-jobs 2 linux' is not"):
        catalog.resolve("jobs 5.0.10 linux", None, ["arnold-jobs 7.1 linux", "octane-jobs 2 linux"])


def test_plugins_for_follows_the_servers_links(packages: PackageCatalog) -> None:
    host = packages.find("jobs 5.0.10 linux")
    assert [p.name for p in packages.plugins_for(host)] == [
        "arnold-jobs 7.1.4 linux",
        "redshift-jobs 3.5.1 linux",
        "redshift-jobs 3.0.62 linux",
    ]
    # 5.0.SP2 is major 5 like the plugins, but the server linked none to it.
    assert packages.plugins_for(packages.find("jobs 5.0.SP2 linux")) == []


# host matching ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "platform", "expected"),
    [
        ("5.0.10", "linux", "jobs 5.0.10 linux"),
        ("5.0.10.0", "linux", "jobs 5.0.10 linux"),  # trailing zeros do not matter
        ("5.0 SP2", "linux", "jobs 5.0.SP2 linux"),
        ("5.0.8", "linux", "jobs 5.0.9 linux"),  # nearest newer of the same major
        ("5.0.12", "linux", "jobs 5.0.10 linux"),  # no newer: nearest older
        ("6.0.0", "linux", "jobs 6.0.1 linux"),
        ("4.5", "linux", "jobs 4.0.SP12 linux"),
        ("5.0.9", "windows", "jobs 5.0.10 windows"),
    ],
)
def test_host_matching(
    packages: PackageCatalog, version: str, platform: str, expected: str
) -> None:
    assert packages.match_host(version, platform=platform).name == expected


def test_no_host_match_names_host_version(packages: PackageCatalog) -> None:
    with pytest.raises(PackageError) as caught:
        packages.match_host("7.0")  # never another major release, even a near one
    assert str(caught.value) == (
        "host_version: no jobs package for version '7.0' on linux;"
        " available: 6.0.1, 5.0.10, 5.0.9, 5.0.SP2, 4.0.SP12"
    )
    with pytest.raises(PackageError, match="on windows; available: 5.0.10$"):
        packages.match_host("6.0.1", platform="windows")
    with pytest.raises(PackageError, match="host_version: '-' is not a version"):
        packages.match_host("-")


# resolving ----------------------------------------------------------------------------------


def test_resolve_from_version_notes_a_fallback(packages: PackageCatalog) -> None:
    exact = packages.resolve(None, "5.0.10", ["redshift-jobs 3.0.62", "arnold-jobs 7.1.4 linux"])
    assert exact.host.name == "jobs 5.0.10 linux" and exact.notes == ()
    assert exact.ids == [exact.host.package_id, *(p.package_id for p in exact.plugins)]
    assert [p.name for p in exact.all][1:] == [
        "redshift-jobs 3.0.62 linux",
        "arnold-jobs 7.1.4 linux",
    ]
    near = packages.resolve(None, "5.0.12", [])
    assert near.notes == (
        "host_version: no jobs 5.0.12 package on linux; using 'jobs 5.0.10 linux'",
    )
    named = packages.resolve("jobs 5.0.9 linux", "5.0.10", [])
    assert named.host.name == "jobs 5.0.9 linux"  # an explicit host package wins
    assert named.notes == ("host_package: 'jobs 5.0.9 linux' differs from host version 5.0.10",)


@pytest.mark.parametrize(
    ("host", "plugins", "message"),
    [
        (
            "jobs 5.0.9 linux",
            ["redshift-jobs 3.5.1 linux"],
            "plugin_packages[0]: 'redshift-jobs 3.5.1 linux' is not a plugin of"
            " 'jobs 5.0.9 linux'; it runs under 'jobs 5.0.10 linux'",
        ),
        (
            "jobs 5.0.10 linux",
            ["arnold-maya-io 5.3.1 linux"],
            "plugin_packages[0]: 'arnold-maya-io 5.3.1 linux' is not a plugin of"
            " 'jobs 5.0.10 linux'; it runs under 'maya-io 2024.1 linux'",
        ),
        (
            "jobs 5.0.10 linux",
            ["redshift-jobs 3.0.63 linux"],
            "plugin_packages[0]: unknown package 'redshift-jobs 3.0.63 linux'; did you mean"
            " 'redshift-jobs 3.0.62 linux', 'redshift-jobs 3.5.1 linux'?",
        ),
        (
            "jobs 5.0.10 linux",
            ["vray-jobs 6 linux"],
            "plugin_packages[0]: unknown package 'vray-jobs 6 linux'",
        ),
        (
            "jobs 5.0.10 linux",
            ["jobs 5.0.9 linux"],
            "plugin_packages[0]: 'jobs 5.0.9 linux' is a host package, not a plugin",
        ),
        (
            "jobs 5.0.10 linux",
            ["redshift-jobs 3.0.62 linux", "arnold-jobs 7.1.4 linux", "redshift-jobs 3.5.1 linux"],
            "plugin_packages[2]: 'redshift-jobs 3.5.1 linux' is a second redshift-jobs package"
            " (plugin_packages[0] is 'redshift-jobs 3.0.62 linux'); keep one",
        ),
        (
            "redshift-jobs 3.5.1 linux",
            [],
            "host_package: 'redshift-jobs 3.5.1 linux' is a plugin of jobs, not a host;"
            " list it in plugin_packages",
        ),
        (
            "maya-io 2024.1 linux",
            [],
            "host_package: 'maya-io 2024.1 linux' is a maya-io package, not jobs",
        ),
        (
            "jobs 9.9 linux",
            [],
            "host_package: unknown package 'jobs 9.9 linux'; known jobs packages:",
        ),
    ],
)
def test_resolve_errors_name_the_field_and_both_packages(
    packages: PackageCatalog, host: str, plugins: list[str], message: str
) -> None:
    with pytest.raises(PackageError) as caught:
        packages.resolve(host, None, plugins)
    assert str(caught.value).startswith(message), str(caught.value)


def test_resolve_needs_a_host(packages: PackageCatalog) -> None:
    with pytest.raises(PackageError, match="^host_package: no host package or host version"):
        packages.resolve(None, None, [])
    with pytest.raises(PackageError, match="^host_version: no jobs package for version '9.1'"):
        packages.resolve(None, "9.1", [])


# environment --------------------------------------------------------------------------------


def test_merge_order_packages_account_job(packages: PackageCatalog) -> None:
    resolved = packages.resolve(
        None, "5.0.10", ["redshift-jobs 3.0.62 linux", "arnold-jobs 7.1.4 linux"]
    )
    env = merge_environment(
        resolved,
        fixture_catalog().extra_environment,
        [
            EnvironmentVariable(name="PATH", value="/first", merge_policy="prepend"),
            EnvironmentVariable(name="JOBS_LICENSE", value="site:1", merge_policy="exclusive"),
            EnvironmentVariable(name="SHOT", value="010", merge_policy="exclusive"),
        ],
    )
    assert env == {
        "ARNOLD_HOME": "/opt/arnold-jobs/7.1.4",
        "JOBS_LICENSE": "site:1",  # the job's exclusive value replaces the package's
        "JOBS_MODULE_PATH": "/opt/arnold-jobs/7.1.4/modules",
        "LD_LIBRARY_PATH": "/opt/redshift-jobs/3.0.62/lib:/opt/jobs/5.0.10/lib",
        "PATH": "/first:/opt/jobs/5.0.10/bin:/opt/redshift-jobs/3.0.62/bin"
        ":/opt/arnold-jobs/7.1.4/bin:/mnt/studio/bin",
        "REDSHIFT_HOME": "/opt/redshift-jobs/3.0.62",
        "SHOT": "010",
        "STUDIO_ROOT": "/mnt/studio",
    }


def test_windows_joins_with_semicolons() -> None:
    catalog = PackageCatalog(fixture_records()["packages"], platforms={"windows"})
    resolved = catalog.resolve(None, "5.0.10", [], platform="windows")
    env = merge_environment(
        resolved, [], [EnvironmentVariable(name="PATH", value="D:/tools", merge_policy="append")]
    )
    assert env["PATH"] == "C:/Program Files/Isotropix/Jobs 5.0.10/bin;D:/tools"


CONFLICTS = [
    ("exclusive", "/a", "append"),
    ("exclusive", "/a", "prepend"),
    ("append", "/a", "exclusive"),
    ("prepend", "/a", "exclusive"),
    ("exclusive", "", "append"),  # no empty-string loophole
    ("exclusive", "", "prepend"),
]


@pytest.mark.parametrize(("first", "value", "second"), CONFLICTS)
def test_every_conflict_direction_names_both_sources(first: str, value: str, second: str) -> None:
    merge = EnvironmentMerge()
    merge.extend([{"name": "X", "value": value, "merge_policy": first}], source="pkg 1 linux")
    with pytest.raises(PackageError) as caught:
        merge.extend([EnvEntry(name="X", value="v", merge_policy=second)], source="environment[1]")
    assert str(caught.value) == (
        f"environment[1]: X is {second} in 'environment[1]' but {first} in 'pkg 1 linux';"
        " make them agree"
    )
    assert caught.value.field == "environment[1]"


def test_same_kind_policies_combine_and_exclusive_replaces() -> None:
    merge = EnvironmentMerge()
    merge.extend(
        [
            {"name": "P", "value": "/b", "merge_policy": "append"},
            {"name": "P", "value": "/c", "merge_policy": "append"},
            {"name": "P", "value": "/a", "merge_policy": "prepend"},
            {"name": "S", "value": "1", "merge_policy": "exclusive"},
            {"name": "N", "value": None},  # no policy: exclusive; no value: empty
            "K=x=y",
        ],
        source="a",
    )
    merge.extend([{"name": "S", "value": "2", "merge_policy": "exclusive"}], source="b")
    assert merge.as_dict() == {"K": "x=y", "N": "", "P": "/a:/b:/c", "S": "2"}


def test_package_conflicts_name_the_job_field() -> None:
    host = Package.model_validate(
        record("h", "host", "1", environment=[{"name": "FOO", "value": "a"}])
    )
    plugin = Package.model_validate(
        record(
            "p",
            "plug",
            "1",
            plugin_host_product="host",
            environment=[{"name": "FOO", "value": "b", "merge_policy": "append"}],
        )
    )
    with pytest.raises(PackageError) as caught:
        merge_environment(ResolvedPackages(host, (plugin,)), [], [])
    assert str(caught.value) == (
        "plugin_packages[0]: FOO is append in 'plug 1 linux' but exclusive in 'host 1 linux';"
        " make them agree"
    )
    account = [EnvEntry(name="FOO", value="c", merge_policy="prepend")]
    with pytest.raises(PackageError) as caught:
        merge_environment(ResolvedPackages(host), account, [])
    assert str(caught.value).startswith(
        "extra_environment: FOO is prepend in 'account extra environment' but exclusive in"
        " 'host 1 linux'"
    )


def test_platform_clash() -> None:
    host = Package.model_validate(record("h", "jobs", "5", platform="windows"))
    plugin = Package.model_validate(record("p", "arnold-jobs", "7", plugin_host_product="jobs"))
    with pytest.raises(PackageError) as caught:
        merge_environment(ResolvedPackages(host, (plugin,)), [], [])
    assert str(caught.value) == (
        "plugin_packages[0]: 'arnold-jobs 7 linux' is for linux but the environment is for windows"
    )
    merge = EnvironmentMerge("linux")
    with pytest.raises(PackageError, match="is for windows"):
        merge.extend([], source="jobs 5 windows", platform="windows")  # even with no entries


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"name": "X", "value": "v", "merge_policy": "replace"},
            "s: X has merge policy 'replace' in 's'; use append, prepend or exclusive",
        ),
        ({"value": "v"}, "s: a variable in 's' has no name"),
        ("NO_EQUALS", "s: 'NO_EQUALS' in 's' is not NAME=value"),
        ("=v", "s: '=v' in 's' is not NAME=value"),
    ],
)
def test_bad_entries(entry: Any, message: str) -> None:
    with pytest.raises(PackageError) as caught:
        EnvironmentMerge().extend([entry], source="s")
    assert str(caught.value) == message


def test_unknown_merge_platform_is_an_error_not_a_key_error() -> None:
    with pytest.raises(PackageError, match="platform: unknown platform 'solaris'"):
        EnvironmentMerge("solaris")
