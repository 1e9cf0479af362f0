"""What `vaporform dev` makes sure of on one machine before it starts the stack: a Docker
engine that answers, and the runtime image project containers start from.

On a fresh Debian machine, as root, both are set up without asking: Debian's `docker.io` is
installed and `dockerd` started in the background (it keeps running after `vaporform dev`
stops, like PostgreSQL), then the default image is built (`debootstrap`, about a minute, with
progress). Without root, or when the Debian mirror cannot be reached, it says exactly what to
run and falls back to the busybox image, which builds in seconds from `busybox-static`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaporform.images import IMAGE_PREFIX, RUNTIMES, ensure_built, has_image

Say = Callable[[str], None]

DOCKER_SOCKET = Path("/var/run/docker.sock")
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static, which the busybox image is made of
FALLBACK_RUNTIME = "busybox"


@dataclass(frozen=True, slots=True)
class Runtime:
    image: str | None  # None: no engine, containers are unavailable
    note: str


def _is_root() -> bool:
    return os.geteuid() == 0


def _apt_install(packages: list[str], say: Say) -> bool:
    """Install Debian packages (root only); False, with the reason said, when it fails."""
    if not _is_root() or shutil.which("apt-get") is None:
        say(f"run as root: apt-get install -y {' '.join(packages)}")
        return False
    say(f"installing {' '.join(packages)} from Debian")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", *packages],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            say(f"{' '.join(command)} failed: {done.stderr.strip()[-300:]}")
            return False
    return True


def docker_client(timeout_s: float = 5) -> Any | None:
    """A client of the local engine if it answers, else None."""
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except docker.errors.DockerException:
        return None
    return client


def ensure_docker_engine(logs_dir: Path, say: Say, deadline_s: float = 60) -> Any | None:
    """The local engine's client, starting (and first installing) `dockerd` when root."""
    client = docker_client()
    if client is not None:
        return client
    if shutil.which("dockerd") is None and not _apt_install(["docker.io"], say):
        return None
    if not _is_root():
        say("start the engine as root: (setsid dockerd >/var/log/dockerd.log 2>&1 &)")
        return None
    say(f"starting dockerd (log: {logs_dir / 'dockerd.log'})")
    with open(logs_dir / "dockerd.log", "ab") as log:
        subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if DOCKER_SOCKET.exists() and (client := docker_client()) is not None:
            return client
        time.sleep(0.5)
    say(f"dockerd did not answer within {deadline_s:.0f} s; see {logs_dir / 'dockerd.log'}")
    return None


def _runtime_of(image: str) -> str | None:
    repository, _, tag = image.rpartition(":")
    name = repository.removeprefix(IMAGE_PREFIX)
    if repository.startswith(IMAGE_PREFIX) and name in RUNTIMES and tag == "latest":
        return name
    return None


def build_hint(name: str, package: str | None) -> str:
    """The command that builds runtime `name` by hand (installing `package` first)."""
    # Under `make dev` the command line is the venv's, which root's PATH does not have.
    beside = Path(sys.executable).with_name("vaporform")
    command = f"{beside if beside.exists() else 'vaporform'} images build {name}"
    return f"apt-get install -y {package} && {command}" if package else command


def _build(client: Any, name: str, say: Say) -> str | None:
    package = {"python": "debootstrap", "busybox": "busybox-static"}[name]
    missing = shutil.which("debootstrap") is None if name == "python" else not BUSYBOX.exists()
    if name == "python" and not _is_root():
        # debootstrap chroots into the new root file system: it runs as root or not at all.
        hint = build_hint(name, package if missing else None)
        say(f"building it needs root; as root, run: {hint}")
        return None
    if missing and not _apt_install([package], say):
        return None
    started = time.perf_counter()
    try:
        reference, _ = ensure_built(client, name, progress=lambda line: say("  " + line))
    except Exception as exc:  # no mirror, no space: say it and let the caller fall back
        say(f"building the {name} image failed: {exc}; to retry: {build_hint(name, None)}")
        return None
    say(f"built {reference} in {time.perf_counter() - started:.0f} s")
    return reference


def ensure_runtime_image(client: Any, default_image: str, say: Say) -> Runtime:
    """The image new project containers start from: the configured one, built if it is ours
    and missing, else the busybox image (said so)."""
    if has_image(client, default_image):
        return Runtime(default_image, "present")
    name = _runtime_of(default_image)
    if name is None:
        say(f"{default_image} is not on this Docker host and is not one we can build")
    else:
        say(f"{default_image} is missing: building it (once per machine)")
        built = _build(client, name, say)
        if built is not None:
            return Runtime(built, "built")
    if name == FALLBACK_RUNTIME:
        return Runtime(None, "no runtime image")
    fallback = _build(client, FALLBACK_RUNTIME, say)
    if fallback is None:
        return Runtime(None, "no runtime image")
    say(f"project containers start from {fallback} until {default_image} is built")
    return Runtime(fallback, f"fell back to {fallback}")
