"""A small runtime image with Python for the AI tests, built in seconds without a network.

The busybox root file system (vaporform.images) plus the interpreter running these tests:
its binary, standard library and the shared libraries they link, at the same absolute paths,
and Hypothesis (pure Python) so ghostwriter tests can run. The Debian image
(`vaporform images build python`) needs debootstrap and a mirror; this one needs neither.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path
from typing import Any

from vaporform.images import _changes, busybox_rootfs, has_image

PY_REPOSITORY = "vaporform/runtime-pytest-ai"
_LIB = re.compile(r"=>\s+(/\S+)|^\s+(/\S+)\s+\(")


def _libraries(paths: list[Path]) -> set[str]:
    found: set[str] = set()
    for path in paths:
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            match = _LIB.search(line)
            if match:
                found.add(match.group(1) or match.group(2))
    return found


def _add(tar: tarfile.TarFile, path: str) -> None:
    tar.add(path, arcname=path.lstrip("/"), recursive=False)


def _site_packages(binary: Path) -> str:
    """Where the interpreter itself, outside any venv, looks for packages: `site-packages`
    under its prefix for a plain build, `/usr/local/lib/python3.X/dist-packages` for Debian's
    (whose stdlib folder holds no `site-packages` on its path)."""
    out = subprocess.run(
        [str(binary), "-I", "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip()


def build(client: Any) -> str:
    import hypothesis
    import sortedcontainers  # type: ignore[import-untyped]

    binary = Path(os.path.realpath(sys._base_executable))  # type: ignore[attr-defined]
    # The tag names what the image is made of: an image left by another interpreter (or
    # another Hypothesis) on this machine is never taken for this one.
    made_of = f"{binary} {sys.version} {hypothesis.__version__} {sortedcontainers.__version__}"
    image = f"{PY_REPOSITORY}:test-{hashlib.sha256(made_of.encode()).hexdigest()[:12]}"
    if has_image(client, image):
        return image
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    dynload = stdlib / "lib-dynload"

    extensions = list(dynload.glob("*.so")) if dynload.is_dir() else []
    native = list(Path(hypothesis.__file__ or "").parent.rglob("*.so"))
    libraries = _libraries([binary, *extensions, *native])
    base = tarfile.open(fileobj=io.BytesIO(busybox_rootfs()))  # noqa: SIM115 (in memory)
    buffer = io.BytesIO()
    skip = {"test", "idlelib", "tkinter", "ensurepip", "turtledemo", "__pycache__", "site-packages"}
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        done: set[str] = set()
        for member in base.getmembers():
            tar.addfile(member, base.extractfile(member) if member.isfile() else None)
            done.add("/" + member.name.strip("./"))
        for path in sorted(libraries | {str(binary)}):
            for parent in reversed(Path(path).parents):
                if str(parent) not in done and str(parent) != "/":
                    done.add(str(parent))
                    info = tarfile.TarInfo(str(parent).lstrip("/"))
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            if path not in done:
                done.add(path)
                tar.add(os.path.realpath(path), arcname=path.lstrip("/"))
        tar.add(
            str(stdlib),
            arcname=str(stdlib).lstrip("/"),
            filter=lambda m: None if set(Path(m.name).parts) & skip else m,
        )
        site = _site_packages(binary).lstrip("/")
        for package in (hypothesis, sortedcontainers):
            folder = Path(package.__file__ or "").parent
            tar.add(
                str(folder),
                arcname=f"{site}/{folder.name}",
                filter=lambda m: None if "__pycache__" in m.name else m,
            )
        import _hypothesis_globals  # type: ignore[import-untyped]

        globals_file = _hypothesis_globals.__file__ or ""
        tar.add(globals_file, arcname=f"{site}/{Path(globals_file).name}")
        link = tarfile.TarInfo("usr/bin/python3")
        link.type, link.linkname = tarfile.SYMTYPE, str(binary)
        tar.addfile(link)
    repository, _, tag = image.rpartition(":")
    client.api.import_image_from_data(
        buffer.getvalue(),
        repository=repository,
        tag=tag,
        # No ld.so.cache in the image: name the folders the copied libraries came from.
        changes=[
            *_changes(repository, "busybox + the tests' Python (AI tests)", ["/bin/sh"]),
            "ENV LD_LIBRARY_PATH=" + ":".join(sorted({str(Path(p).parent) for p in libraries})),
        ],
    )
    return image
