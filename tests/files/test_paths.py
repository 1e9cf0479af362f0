"""The path gate: hostile names are refused, good names come back normalised."""

from __future__ import annotations

import unicodedata

import pytest

from files.paths import InvalidPath, language_of, normalize_path, normalize_prefix

HOSTILE = [
    "",
    "/etc/passwd",
    "/",
    "../secret",
    "a/../../b",
    "a/..",
    "..",
    ".",
    "./a",
    "a/./b",
    "a//b",
    "a/",
    "a/b/",
    "//a",
    "a\\b",
    "..\\..\\windows",
    "a\x00b",
    "a\nb",
    "a\rb",
    "a\tb",
    "a\x1bb",
    "a\x7fb",
    "%2e%2e/secret",
    "a/%2e%2e",
    "%252e%252e/x",
    "a%2fb",
    "a%5cb",
    "evil\u202etxt.exe",  # right-to-left override
    "zero\u200bwidth",  # zero-width space
    "bom\ufeff",
    "line\u2028sep",
    "x" * 256,
    "a/" + "é" * 128,  # 256 bytes in UTF-8
    "/".join(["abc"] * 1100),  # over 4096 bytes
    "/".join(["d"] * 65),  # 65 segments
    "/".join(["b" * 204] * 4 + ["b" * 205]),  # 1,025 bytes
    "/".join(["é" * 127] * 4 + ["é" * 3]),  # 1,026 bytes in UTF-8
    " leading",
    "trailing ",
    "a/ b",
    "\udc80",  # lone surrogate
]


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_paths_are_refused(raw: str) -> None:
    with pytest.raises(InvalidPath) as caught:
        normalize_path(raw)
    assert caught.value.reason


def test_the_limits_are_named_in_the_refusal() -> None:
    assert normalize_path("/".join(["d"] * 64)).count("/") == 63
    longest = "/".join(["b" * 204] * 5)
    assert len(longest.encode()) == 1024
    assert normalize_path(longest) == longest
    with pytest.raises(InvalidPath) as caught:
        normalize_path("/".join(["d"] * 65))
    assert caught.value.limits == {"max_segments": 64}
    with pytest.raises(InvalidPath) as caught:
        normalize_path("/".join(["é" * 127] * 4 + ["é" * 3]))
    assert caught.value.limits == {"max_bytes": 1024}


def test_there_are_at_least_thirty_hostile_cases() -> None:
    assert len(HOSTILE) >= 30


@pytest.mark.parametrize("raw", [None, 3, b"bytes", ["a"]])
def test_non_strings_are_refused(raw: object) -> None:
    with pytest.raises(InvalidPath):
        normalize_path(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "main.py",
        "src/app/main.py",
        ".gitignore",
        "a b/c d.txt",
        "日本語/ファイル.md",
        "😀.txt",
        "x" * 255,
        "...",
        "a..b",
        "%41",
    ],
)
def test_good_paths_pass_unchanged(raw: str) -> None:
    assert normalize_path(raw) == raw


def test_paths_are_nfc_normalised_so_spellings_cannot_collide() -> None:
    decomposed = unicodedata.normalize("NFD", "café/naïve.txt")
    composed = unicodedata.normalize("NFC", "café/naïve.txt")
    assert decomposed != composed
    assert normalize_path(decomposed) == normalize_path(composed) == composed


def test_prefixes() -> None:
    assert normalize_prefix("") == ""
    assert normalize_prefix("/") == ""
    assert normalize_prefix("src") == "src/"
    assert normalize_prefix("src/app/") == "src/app/"
    with pytest.raises(InvalidPath):
        normalize_prefix("src/../..")


def test_languages() -> None:
    assert language_of("a/b/main.py") == "python"
    assert language_of("x.TSX") == "typescript"
    assert language_of("Dockerfile") == "dockerfile"
    assert language_of("README") is None
    assert language_of(".bashrc") is None
