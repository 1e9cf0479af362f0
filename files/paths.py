"""The one gate every project path passes: REST, archive import and workspace sync alike.

A path is relative, `/`-separated, NFC-normalised UTF-8 with no empty, `.` or `..` segment, no
control or invisible formatting characters, no backslash, segments of at most 255 bytes, at
most 64 segments and at most 1,024 bytes in all (UTF-8). What is accepted is returned
normalised, so two spellings of one name (NFD vs NFC) can never become two files.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote

MAX_PATH_BYTES = 1024
MAX_SEGMENTS = 64
MAX_SEGMENT_BYTES = 255

# Unicode categories refused anywhere in a name: controls, format characters (zero-width and
# bidi overrides that make a name look like another), separators other than space, surrogates
# and unassigned code points.
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Cn", "Zl", "Zp"}


class InvalidPath(ValueError):
    def __init__(self, path: object, reason: str, **limits: int) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason
        self.limits = limits  # the limit a too-long path broke, for the error's details


def normalize_path(raw: object) -> str:
    if not isinstance(raw, str):
        raise InvalidPath(raw, "a path must be a string")
    if raw == "":
        raise InvalidPath(raw, "the path is empty")
    if raw.startswith("/"):
        raise InvalidPath(raw, "absolute paths are not allowed")
    if "\\" in raw:
        raise InvalidPath(raw, "backslashes are not allowed")
    for char in raw:
        if unicodedata.category(char) in _REFUSED_CATEGORIES or char in "\ufeff\ufffe\uffff":
            raise InvalidPath(raw, f"the character U+{ord(char):04X} is not allowed")
    path = unicodedata.normalize("NFC", raw)
    if len(path.encode()) > MAX_PATH_BYTES:
        raise InvalidPath(
            raw, f"the path is longer than {MAX_PATH_BYTES} bytes", max_bytes=MAX_PATH_BYTES
        )
    segments = path.split("/")
    if len(segments) > MAX_SEGMENTS:
        raise InvalidPath(
            raw, f"the path has more than {MAX_SEGMENTS} segments", max_segments=MAX_SEGMENTS
        )
    for segment in segments:
        if segment == "":
            raise InvalidPath(raw, "empty path segments are not allowed")
        if segment in (".", ".."):
            raise InvalidPath(raw, f"'{segment}' segments are not allowed")
        # A name that decodes to a traversal is refused too: something downstream may decode.
        decoded = unquote(unquote(segment))
        if decoded in (".", "..") or "/" in decoded or "\\" in decoded:
            raise InvalidPath(raw, "encoded traversal is not allowed")
        if segment != segment.strip():
            raise InvalidPath(raw, "segments may not start or end with white space")
        if len(segment.encode()) > MAX_SEGMENT_BYTES:
            raise InvalidPath(
                raw,
                f"a segment is longer than {MAX_SEGMENT_BYTES} bytes",
                max_segment_bytes=MAX_SEGMENT_BYTES,
            )
    return path


def normalize_prefix(raw: str) -> str:
    """A folder prefix for listings: '' for the root, else a valid path with a trailing '/'."""
    stripped = raw.strip("/")
    return "" if stripped == "" else normalize_path(stripped) + "/"


def is_under(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip("/") + "/")


_LANGUAGES = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".json": "json",
    ".md": "markdown",
    ".rst": "restructuredtext",
    ".txt": "plaintext",
    ".html": "html",
    ".htm": "html",
    ".css": "css",
    ".scss": "scss",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".ini": "ini",
    ".cfg": "ini",
    ".sh": "shell",
    ".bash": "shell",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".kt": "kotlin",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".sql": "sql",
    ".xml": "xml",
    ".svg": "xml",
    ".swift": "swift",
    ".lua": "lua",
    ".r": "r",
    ".scala": "scala",
    ".dart": "dart",
}
_FILENAMES = {
    "Dockerfile": "dockerfile",
    "Makefile": "makefile",
    "CMakeLists.txt": "cmake",
    ".gitignore": "ignore",
    ".dockerignore": "ignore",
}


def language_of(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1]
    if name in _FILENAMES:
        return _FILENAMES[name]
    dot = name.rfind(".")
    return _LANGUAGES.get(name[dot:].lower()) if dot > 0 else None
