"""The job the download benches post straight to the sandbox: its render package and tasks that
each render a few frames of several images, without the submit flow in between."""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
import time
from typing import Any

import httpx

from prefect_conductor.conductor_cloud.api.client import ConductorClient, UploadRequest
from prefect_conductor.conductor_cloud.job.scene import HostInfo, ImageExport, SceneExport
from prefect_conductor.sandbox.node.package import package_document


def post_frames_job(
    client: ConductorClient, output_path: str, tasks: int, frames: int, images: int
) -> str:
    """Post a job of ``tasks`` tasks, each rendering ``images`` images x ``frames`` frames into
    ``output_path``; returns its jid at once."""
    save_as = {
        f"project://scene/img{i}": f"{output_path}/img{i}/img{i}.####.exr" for i in range(images)
    }
    scene = SceneExport(
        host=HostInfo(version="5.0.10"),
        project_path="/scene.project",
        render_package="/p.project",
        images=[
            ImageExport(path=p, render_to_disk=True, save_as=s, first_frame=1, last_frame=1)
            for p, s in save_as.items()
        ],
    )
    package = json.dumps(package_document(scene)).encode()
    md5 = base64.b64encode(hashlib.md5(package).digest()).decode()
    for url in client.get_upload_urls(
        [UploadRequest("/p.project", md5, len(package))], "default"
    ).single_part:
        httpx.put(url.url, content=package).raise_for_status()
    names = " ".join(save_as)
    folders = " ".join(posixpath.dirname(s) for s in save_as.values())
    tasks_data = []
    for index in range(tasks):
        first, last = index * frames + 1, (index + 1) * frames
        spans = " ".join([f"{first}:{last}"] * images)
        tasks_data.append(
            {
                "command": f"mkdir -p {folders} && cd / && cnode p.project -image {names}"
                f" -image_frames_list {spans}",
                "frames": f"{first}-{last}",
            }
        )
    payload: dict[str, Any] = {
        "instance_type": "n1-standard-8",
        "project": "default",
        "output_path": output_path,
        "local_upload": True,
        "upload_files": [{"md5": md5, "destination": "/p.project"}],
        "tasks_data": tasks_data,
    }
    return client.submit_job(payload, f"bench-{time.time()}").jid
