"""Every deployment works from the installed package: the wheel, installed in a fresh virtual
environment, loads each entrypoint of deployments/prefect.yaml from an empty folder.

The fresh environment installs the wheel alone (no dependencies) and borrows this environment's
packages (Prefect and the rest) through a path file, so nothing is downloaded; the borrowed folder
is only put on the path, so this checkout's editable install is not loaded and ``prefect_conductor``
can come only from the wheel.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest
import yaml

# Each test runs the wrapper, the stand-in renderer or pip in a subprocess: the slow tier.
pytestmark = pytest.mark.usefixtures("cli_subprocess")

REPO = Path(__file__).resolve().parent.parent
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"

LOAD = textwrap.dedent(
    """\
    import json, sys
    from prefect.flows import Flow, load_flow_from_entrypoint
    import prefect_conductor
    loaded = {}
    for entrypoint in sys.argv[1:]:
        flow = load_flow_from_entrypoint(entrypoint)
        assert isinstance(flow, Flow), entrypoint
        loaded[entrypoint] = flow.name
    print(json.dumps({"package": prefect_conductor.__file__, "flows": loaded}))
    """
)


def entrypoints() -> list[str]:
    document = yaml.safe_load(PREFECT_YAML.read_text())
    return [deployment["entrypoint"] for deployment in document["deployments"]]


def test_every_entrypoint_is_a_module_path() -> None:
    for entrypoint in entrypoints():
        module, _, name = entrypoint.partition(":")
        assert name and "/" not in module and not module.endswith(".py"), entrypoint


@pytest.mark.e2e
def test_every_entrypoint_loads_from_the_installed_wheel_outside_the_checkout(
    tmp_path: Path,
) -> None:
    wheels = tmp_path / "dist"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"),
            *("-w", str(wheels), str(REPO)),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("prefect_conductor-*.whl")
    environment = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = environment / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    finished = subprocess.run(
        [str(python), "-c", LOAD, *entrypoints()],
        cwd=empty,
        env={"PATH": "/usr/bin:/bin", "PREFECT_HOME": str(tmp_path / "prefect-home")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    answer = json.loads(finished.stdout.strip().splitlines()[-1])
    assert Path(answer["package"]).is_relative_to(site)  # the wheel's, not this checkout's
    assert set(answer["flows"]) == set(entrypoints())
    assert set(answer["flows"].values()) == {
        "render-submit",
        "refresh-catalog",
        "submit-batch",
        "download-outputs",
        "watch-jobs",
    }
