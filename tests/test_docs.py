"""The docs agree with the code: links resolve, deployment names exist, step names are tasks."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import yaml
from prefect import Task

import prefect_conductor.tasks
from prefect_conductor.host_export.trigger import DEFAULT_DEPLOYMENT

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, ROOT / "deployments" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FLOWS = ("render-submit", "refresh-catalog", "submit-batch", "download-outputs", "watch-jobs")
DEPLOYMENT_REF = re.compile(rf"\b({'|'.join(FLOWS)})/([a-z0-9][a-z0-9-]*)")


def deployments() -> list[tuple[str, str]]:
    """(flow, name) of every deployment in deployments/prefect.yaml."""
    document = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    flows = {
        "render_submit": "render-submit",
        "refresh_catalog": "refresh-catalog",
        "submit_batch": "submit-batch",
        "download_outputs": "download-outputs",
        "watch_jobs": "watch-jobs",
    }
    found = []
    for item in document["deployments"]:
        function = item["entrypoint"].rsplit(":", 1)[1]
        found.append((flows[function], item["name"]))
    return found


def test_the_readme_is_a_front_door() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 130
    fences = [n for n, line in enumerate(lines) if line.startswith("```")]
    first_block = lines[fences[0] + 1 : fences[1]]
    assert len(first_block) == 2
    assert all(line.startswith("python3 -m venv .venv && ") for line in first_block)


def test_every_relative_link_and_picture_exists() -> None:
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            assert path.exists(), f"{page.relative_to(ROOT)}: {target}"
            if path.suffix == ".png":
                assert path.stat().st_size < 200_000, path


def test_deployment_names_are_distinct_and_every_one_named_exists() -> None:
    declared = deployments()
    names = [name for _, name in declared]
    assert len(set(names)) == len(names), names
    texts = [page.read_text() for page in PAGES]
    texts += [p.read_text() for p in (ROOT / "prefect_conductor").rglob("*.py")]
    texts += [p.read_text() for p in (ROOT / "bench").glob("*.py")]
    named = {(m[0], m[1]) for text in texts for m in DEPLOYMENT_REF.findall(text)}
    assert named, "no deployment is named anywhere"
    assert named <= set(declared), named - set(declared)
    assert tuple(DEFAULT_DEPLOYMENT.split("/")) in declared


def test_the_pipeline_steps_in_architecture_md_are_the_flows_task_names() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    pipeline = text.split("## The pipeline", 1)[1].split("## After Submit", 1)[0]
    steps = set(re.findall(r"\*\*([a-z][a-z-]+)\*\*", pipeline))
    tasks = set()
    for module in pkgutil.iter_modules(prefect_conductor.tasks.__path__):
        loaded = importlib.import_module(f"prefect_conductor.tasks.{module.name}")
        tasks |= {value.name for value in vars(loaded).values() if isinstance(value, Task)}
    assert len(steps) >= 9
    assert steps <= tasks, steps - tasks
