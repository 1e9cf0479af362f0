"""Runtime images built locally, without a registry: `vaporform images build`.

Docker Hub may be unreachable, so every image is a root file system made from Debian's
packages and turned into an image with `docker import`:

- `vaporform/runtime-busybox`: the static busybox binary and its applets (2 MB, seconds). The
  tests run on it.
- `vaporform/runtime-python`: `debootstrap --variant=minbase bookworm` with Python 3 and the
  tools the AI test jobs run offline (pytest, Hypothesis, coverage), trimmed (about a minute;
  needs the Debian mirror and root).

Both carry the same user (uid/gid 1000, home /workspace) and the labels the API lists them by.
`images/*/Dockerfile` build the same images for people who do have a registry.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_PREFIX = "vaporform/runtime-"
LABEL_RUNTIME = "dev.vaporform.runtime"
LABEL_DESCRIPTION = "dev.vaporform.description"
RUNTIME_UID = 1000

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    f"runner:x:{RUNTIME_UID}:{RUNTIME_UID}:runner:/workspace:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = f"root:x:0:\nrunner:x:{RUNTIME_UID}:\nnogroup:x:65534:\n"

Progress = Callable[[str], None]

# What the python runtime carries besides the interpreter: the offline test generator's and
# coverage's tools, so AI test jobs run their suites inside the container.
PYTHON_PACKAGES = ("python3", "python3-pytest", "python3-hypothesis", "python3-coverage")


@dataclass(frozen=True, slots=True)
class RuntimeImage:
    name: str  # repository, e.g. vaporform/runtime-busybox
    description: str
    build: Callable[[Any, str, Progress], None]  # (docker client, reference, progress)

    def reference(self, tag: str = "latest") -> str:
        return f"{self.name}:{tag}"


def _changes(name: str, description: str, cmd: list[str]) -> list[str]:
    import json

    return [
        f"CMD {json.dumps(cmd)}",
        f"USER {RUNTIME_UID}:{RUNTIME_UID}",
        "WORKDIR /workspace",
        "ENV HOME=/workspace",
        "ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        f"LABEL {LABEL_RUNTIME}={name.removeprefix(IMAGE_PREFIX)}",
        f"LABEL {LABEL_DESCRIPTION}={json.dumps(description)}",
    ]


def _add_dir(tar: tarfile.TarFile, path: str, mode: int = 0o755, uid: int = 0) -> None:
    info = tarfile.TarInfo(path)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.uid = info.gid = uid
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, path: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(path)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def busybox_rootfs(busybox: Path = Path("/bin/busybox")) -> bytes:
    """A tar of a root file system holding busybox and a symlink per applet.

    The links are written straight into the archive from `busybox --list`, so nothing runs
    `busybox --install` (which would overwrite the host's /bin outside a chroot).
    """
    if not busybox.exists():
        raise FileNotFoundError(f"{busybox} is missing: apt-get install busybox-static")
    applets = subprocess.run(
        [str(busybox), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in ("bin", "etc", "dev", "proc", "sys", "usr", "usr/bin", "root"):
            _add_dir(tar, path)
        _add_dir(tar, "tmp", 0o1777)
        _add_dir(tar, "workspace", 0o755, uid=RUNTIME_UID)
        _add_file(tar, "bin/busybox", busybox.read_bytes(), 0o755)
        for applet in applets:
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        _add_file(tar, "etc/passwd", PASSWD.encode())
        _add_file(tar, "etc/group", GROUP.encode())
    return buffer.getvalue()


def build_busybox(client: Any, reference: str, progress: Progress) -> None:
    progress("writing the busybox root file system")
    data = busybox_rootfs()
    progress(f"importing {len(data) // 1024} KiB as {reference}")
    repository, _, tag = reference.rpartition(":")
    client.api.import_image_from_data(
        data,
        repository=repository,
        tag=tag,
        changes=_changes(
            repository, "BusyBox shell and tools (tiny; used by the tests)", ["/bin/sh"]
        ),
    )


def build_python(client: Any, reference: str, progress: Progress) -> None:
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise RuntimeError("debootstrap is missing: apt-get install -y debootstrap")
    with tempfile.TemporaryDirectory(prefix="vaporform-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        progress(f"debootstrap bookworm (minbase + {', '.join(PYTHON_PACKAGES)}), about a minute")
        include = "--include=" + ",".join(PYTHON_PACKAGES)
        command = [debootstrap, "--variant=minbase", include, "bookworm", str(root)]
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith(("I: Retrieving", "I: Extracting", "I: Configuring")):
                    progress("  " + line.strip()[3:])
        if proc.returncode != 0:
            raise RuntimeError(f"debootstrap failed with exit code {proc.returncode}")
        progress("trimming apt caches and documentation")
        for sub in ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(root / sub, ignore_errors=True)
        (root / "workspace").mkdir(exist_ok=True)
        os.chown(root / "workspace", RUNTIME_UID, RUNTIME_UID)
        with open(root / "etc/passwd", "a") as fh:
            fh.write(f"runner:x:{RUNTIME_UID}:{RUNTIME_UID}:runner:/workspace:/bin/sh\n")
        with open(root / "etc/group", "a") as fh:
            fh.write(f"runner:x:{RUNTIME_UID}:\n")
        progress(f"importing as {reference}")
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE
        )
        assert tar.stdout is not None
        repository, _, tag = reference.rpartition(":")
        client.api.import_image_from_data(
            tar.stdout.read(),
            repository=repository,
            tag=tag,
            changes=_changes(
                repository, "Debian 12 with Python 3, pytest, Hypothesis, coverage", ["/bin/bash"]
            ),
        )
        if tar.wait() != 0:
            raise RuntimeError("tar of the root file system failed")


RUNTIMES: dict[str, RuntimeImage] = {
    "busybox": RuntimeImage(IMAGE_PREFIX + "busybox", "BusyBox shell and tools", build_busybox),
    "python": RuntimeImage(IMAGE_PREFIX + "python", "Debian 12 with Python 3", build_python),
}


def has_image(client: Any, reference: str) -> bool:
    import docker.errors

    try:
        client.images.get(reference)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_built(
    client: Any, name: str, *, tag: str = "latest", force: bool = False, progress: Progress
) -> tuple[str, bool]:
    """Build runtime `name` unless an image with its tag exists. (reference, built now)."""
    runtime = RUNTIMES[name]
    reference = runtime.reference(tag)
    if not force and has_image(client, reference):
        return reference, False
    runtime.build(client, reference, progress)
    return reference, True


def build_command(names: Iterable[str], *, force: bool, tag: str = "latest") -> int:
    """`vaporform images build [NAME...]` with a line of progress per step."""
    import docker

    client = docker.from_env()
    failures = 0
    for name in names:
        started = time.perf_counter()
        print(f"[{name}] {RUNTIMES[name].reference(tag)}", flush=True)

        def progress(message: str, name: str = name) -> None:
            print(f"[{name}]   {message}", flush=True)

        try:
            _, built = ensure_built(client, name, tag=tag, force=force, progress=progress)
        except Exception as exc:  # report and go on with the next image
            failures += 1
            print(f"[{name}] failed: {exc}", file=sys.stderr, flush=True)
            continue
        took = time.perf_counter() - started
        print(f"[{name}] {'built' if built else 'already there'} ({took:.1f} s)", flush=True)
    return 1 if failures else 0
