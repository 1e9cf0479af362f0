"""Print pyproject.toml's runtime dependencies, one a line, minus those named in argv.

The image installs these in their own layer, before the source is copied, so editing the code
does not reinstall every dependency; `pip install --no-deps .` then adds the package itself.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(pyproject: str, skip: list[str]) -> None:
    dependencies = tomllib.loads(Path(pyproject).read_text())["project"]["dependencies"]
    dropped = {canonical(name) for name in skip}
    for requirement in dependencies:
        name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        if name is None:
            sys.exit(f"cannot read the requirement {requirement!r}")
        if canonical(name.group(1)) not in dropped:
            print(requirement)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
