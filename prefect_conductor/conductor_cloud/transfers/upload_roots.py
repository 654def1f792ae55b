"""Which files a scene may upload: only from allowed folders, never the submitter's own secrets.

A scene export is input from whoever submitted the run, and on a shared worker the upload step
reads with the worker's rights: a dependency of ``/${CONDUCTOR_API_KEY_PATH}`` once sent the
API key file to storage. So every file of the upload list must lie (after resolving symlinks)

- under the scene's project folder, the staging folder the submitter copies render packages to,
  or a folder the studio lists in ``PREFECT_CONDUCTOR_UPLOAD_ROOTS`` (os.pathsep-separated);
- and never be the API key file, or anything in the per-user folder other than its staging
  folder (the token cache, the md5 cache, the catalogue), whatever the roots say.

The check runs where the upload list is built (``submission.prepare``), so ``preview`` and
``submit`` refuse alike, before anything is hashed or sent. A refused file is one line naming the
path and the setting.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.conductor_cloud.job.paths import mount_problem
from prefect_conductor.conductor_cloud.settings import ConductorSettings, get_settings

SETTING = "PREFECT_CONDUCTOR_UPLOAD_ROOTS"


class UploadRefused(UserError):
    """A file of the upload list may not be uploaded; ``path`` names it."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(f"uploads: {path}: {reason}")


def _real(path: Path | str) -> Path:
    """``path`` absolute with every symlink resolved (a missing tail is kept as written)."""
    return Path(path).expanduser().resolve(strict=False)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def protected_reason(path: Path, settings: ConductorSettings) -> str | None:
    """Why ``path`` (resolved) may never be uploaded, or None when it is not one of ours."""
    if settings.api_key_path is not None and path == _real(settings.api_key_path):
        return "is the Conductor API key file (CONDUCTOR_API_KEY_PATH) and is never uploaded"
    home = _real(settings.home)
    if _inside(path, home) and not _inside(path, _real(settings.staging_dir)):
        return (
            "is in the per-user folder (PREFECT_CONDUCTOR_HOME: tokens, caches) and is never"
            " uploaded"
        )
    return None


def allowed_roots(
    project_path: str, settings: ConductorSettings, extra: Sequence[Path] = ()
) -> tuple[Path, ...]:
    """The folders uploads may come from: the project's, staging, the studio's, ``extra``."""
    roots = [_real(settings.staging_dir), *(_real(r) for r in settings.upload_root_paths)]
    if project_path:
        roots.insert(0, _real(project_path).parent)
    return (*roots, *(_real(r) for r in extra))


def check_uploadable(
    files: Iterable[Path],
    project_path: str,
    *,
    base_dir: Path | None = None,
    extra_roots: Sequence[Path] = (),
    settings: ConductorSettings | None = None,
) -> None:
    """Raise :class:`UploadRefused` for the first file that may not be uploaded.

    A relative ``project_path`` is taken from ``base_dir`` (as validation anchors dependencies).
    ``extra_roots`` may name single files (the staged render package, whose source
    :func:`loaders.load_scene` checked before it was copied).
    """
    settings = settings or get_settings()
    if project_path and base_dir is not None:
        project_path = str(base_dir / project_path)
    roots = allowed_roots(project_path, settings, extra_roots)
    for file in files:
        mount = mount_problem(str(file))
        if mount is not None:
            raise UploadRefused(Path(file), mount)
        real = _real(file)
        reason = protected_reason(real, settings)
        if reason is not None:
            raise UploadRefused(Path(file), reason)
        if not any(_inside(real, root) for root in roots):
            project = _real(project_path).parent if project_path else None
            where = f"the project folder {project}" if project else "no project folder"
            raise UploadRefused(
                Path(file),
                f"outside the folders a scene may upload from ({where}; add a folder to {SETTING}"
                " to allow it)",
            )
