"""The request and response bodies of the file routes (web/blueprints/files.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FileWrite(Strict):
    content: str
    encoding: str = Field(default="utf-8", pattern=r"^(utf-8|base64)$")
    base_version: int | None = Field(default=None, ge=0)
    message: str = Field(default="", max_length=1000)


class MoveIn(Strict):
    source: str = Field(alias="from", min_length=1, max_length=8192)
    target: str = Field(alias="to", min_length=1, max_length=8192)


class RestoreIn(Strict):
    path: str = Field(min_length=1, max_length=8192)
    version: int = Field(ge=1)


class ListQuery(BaseModel):
    prefix: str = ""


class ReadQuery(BaseModel):
    version: int | None = None


class PathQuery(BaseModel):
    path: str


class DiffQuery(BaseModel):
    path: str
    from_: int = Field(alias="from")
    to: int


class SearchQuery(BaseModel):
    q: str
    regex: bool = False
    glob: str | None = None


class WriteOut(BaseModel):
    path: str
    version: int


class FileListing(BaseModel):
    path: str
    size: int
    language: str | None
    version: int
    updated_at: str


class FileList(BaseModel):
    items: list[FileListing]


class FileOut(BaseModel):
    path: str
    content: str = Field(description="the text, or base64 when `encoding` is base64")
    encoding: Literal["utf-8", "base64"]
    version: int
    language: str | None
    size: int
    sha256: str
    updated_at: str


class Moved(BaseModel):
    source: str = Field(alias="from")
    target: str = Field(alias="to")


class MoveOut(BaseModel):
    moved: list[Moved]


class VersionOut(BaseModel):
    version: int
    path: str
    author_id: str | None
    author: str = Field(description="who wrote it: `user`, `ai` or `container`")
    message: str
    size: int
    sha256: str
    created_at: str


class HistoryOut(BaseModel):
    items: list[VersionOut] = Field(description="newest first")


class DiffOut(BaseModel):
    diff: str = Field(description="a unified diff")


class SearchHit(BaseModel):
    path: str
    line: int
    column: int = Field(description="1-based, in UTF-16 code units")
    preview: str


class SearchOut(BaseModel):
    items: list[SearchHit]


class ImportOut(BaseModel):
    files: list[WriteOut]
