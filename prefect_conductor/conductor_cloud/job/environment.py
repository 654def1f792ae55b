"""The render nodes' environment: packages', account's and job's variables under merge policies.

Split from ``packages.py`` because merging stands alone: it needs only entries and a platform.
The reference client refuses mixing list and scalar merge policies for one variable except when
the scalar is an empty string; here every mix is refused, in either order, naming both sources.
Every failure is a one-line :class:`PackageError` naming the job field to fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, field_validator

from prefect_conductor.conductor_cloud.errors import PackageError

if TYPE_CHECKING:
    from prefect_conductor.conductor_cloud.job.packages import ResolvedPackages

SEPARATORS: Mapping[str, str] = {"linux": ":", "windows": ";"}
MERGE_POLICIES: tuple[str, ...] = ("append", "prepend", "exclusive")


class EnvEntry(BaseModel):
    """One environment variable of a package or of the account: name, value, merge policy.

    The policy stays a plain string so an unknown one from the server survives loading and is
    reported by :class:`EnvironmentMerge` with the variable and its source, not as a parse error.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)

    name: str
    value: str = ""
    merge_policy: str = "exclusive"

    @field_validator("value", "merge_policy", mode="before")
    @classmethod
    def _none_is_default(cls, value: Any) -> Any:
        return "" if value is None else value


class EnvLike(Protocol):
    """Anything with a name, a value and a merge policy (EnvEntry, job EnvironmentVariable)."""

    @property
    def name(self) -> str: ...
    @property
    def value(self) -> str: ...
    @property
    def merge_policy(self) -> str: ...


EnvInput = EnvEntry | EnvLike | Mapping[str, Any] | str


@dataclass
class _Variable:
    """What is known about one variable so far: list or scalar, and who set it last."""

    policy: str
    source: str
    values: list[str]


class EnvironmentMerge:
    """Merge environment entries from several sources under Conductor's merge policies.

    ``append`` and ``prepend`` build a path list (prepend goes ahead of everything earlier),
    ``exclusive`` sets a single value (a later exclusive value replaces an earlier one). A
    variable is either a list or a single value: mixing the two is an error in either order, for
    any value, including an empty one.
    """

    def __init__(self, platform: str = "linux") -> None:
        if platform not in SEPARATORS:
            raise PackageError(
                "platform", f"unknown platform {platform!r}; use {' or '.join(SEPARATORS)}"
            )
        self.platform = platform
        self._variables: dict[str, _Variable] = {}

    def extend(
        self,
        entries: Iterable[EnvInput],
        source: str,
        *,
        field: str | None = None,
        platform: str | None = None,
    ) -> None:
        """Add entries from one source.

        ``source`` says where they came from (a package name, ``account extra environment``,
        ``environment[2]``) for messages; ``field`` is the job field errors are reported against
        (default: ``source``). ``platform``, when given, must be this merge's platform: a Windows
        package's paths cannot join a Linux environment.
        """
        where = field or source
        if platform is not None and platform != self.platform:
            raise PackageError(
                where,
                f"{source!r} is for {platform} but the environment is for {self.platform}",
            )
        for entry in entries:
            name, value, policy = _unpack(entry, source, where)
            self._add(name, value, policy, source, where)

    def _add(self, name: str, value: str, policy: str, source: str, where: str) -> None:
        if policy not in MERGE_POLICIES:
            raise PackageError(
                where,
                f"{name} has merge policy {policy!r} in {source!r}; use append, prepend or"
                " exclusive",
            )
        known = self._variables.get(name)
        if known is None:
            self._variables[name] = _Variable(policy, source, [value])
            return
        if (known.policy == "exclusive") != (policy == "exclusive"):
            raise PackageError(
                where,
                f"{name} is {policy} in {source!r} but {known.policy} in {known.source!r};"
                " make them agree",
            )
        if policy == "exclusive":
            known.values = [value]
        elif policy == "append":
            known.values.append(value)
        else:
            known.values.insert(0, value)
        known.policy, known.source = policy, source

    def as_dict(self) -> dict[str, str]:
        """The flat map Conductor wants, by name; lists joined with ``:`` or ``;`` (windows)."""
        separator = SEPARATORS[self.platform]
        return {
            name: separator.join(variable.values)
            for name, variable in sorted(self._variables.items())
        }


def _unpack(entry: EnvInput, source: str, where: str) -> tuple[str, str, str]:
    """(name, value, policy) from any accepted entry shape; ``"K=V"`` strings are exclusive."""
    if isinstance(entry, str):
        text_name, equals, text_value = entry.partition("=")
        if not equals or not text_name.strip():
            raise PackageError(where, f"{entry!r} in {source!r} is not NAME=value")
        return text_name.strip(), text_value, "exclusive"
    name: Any
    value: Any
    policy: Any
    if isinstance(entry, Mapping):
        name, value = entry.get("name"), entry.get("value")
        policy = entry.get("merge_policy") or "exclusive"
    else:
        name, value, policy = entry.name, entry.value, entry.merge_policy
    if not name or not isinstance(name, str):
        raise PackageError(where, f"a variable in {source!r} has no name")
    return name, "" if value is None else str(value), str(policy)


def merge_environment(
    resolved: ResolvedPackages,
    account_env: Sequence[EnvInput],
    job_env: Sequence[EnvInput],
) -> dict[str, str]:
    """The render nodes' environment: host, plugins, account extra environment, then the job's.

    Later sources extend or replace earlier ones by policy. Errors name the job field to fix:
    ``host_package``, ``plugin_packages[i]``, ``extra_environment`` (the account's, set in
    Conductor) or ``environment[i]``.
    """
    host = resolved.host
    merge = EnvironmentMerge(host.platform)
    merge.extend(host.environment, source=host.name, field="host_package", platform=host.platform)
    for index, plugin in enumerate(resolved.plugins):
        merge.extend(
            plugin.environment,
            source=plugin.name,
            field=f"plugin_packages[{index}]",
            platform=plugin.platform,
        )
    merge.extend(account_env, source="account extra environment", field="extra_environment")
    for index, entry in enumerate(job_env):
        merge.extend([entry], source=f"environment[{index}]")
    return merge.as_dict()
