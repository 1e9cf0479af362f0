"""`OfflineProvider`: used when no `ANTHROPIC_API_KEY` is set. Real tools, no model.

- review: ruff's findings, as they are;
- tests: Hypothesis' ghostwriter, fed a stub of the module built from its syntax tree
  (signatures and simple annotations only), so no project code runs on the worker;
- debug and generate: a clear "not configured" error instead of pretending.
"""

from __future__ import annotations

import ast
import asyncio
import sys
import types
import uuid
from typing import Any

from activities.ai.provider import (
    Beat,
    Meter,
    ProviderAnswer,
    ProviderError,
    ProviderRequest,
    ProviderUsage,
)
from activities.ai.ruff_lint import ruff_findings
from workflows.ai.findings import finding_public

NOT_CONFIGURED = (
    "AI provider not configured: set ANTHROPIC_API_KEY on the worker to use {task} jobs "
    "(offline, only reviews (ruff) and test generation (Hypothesis ghostwriter) work)"
)

# Annotations we let the stub keep: evaluating them runs no project code.
_SAFE_NAMES = {
    "int", "float", "str", "bytes", "bool", "complex", "list", "dict", "set", "frozenset",
    "tuple", "None", "object",
}  # fmt: skip


class OfflineProvider:
    name = "offline"
    model = "offline"

    async def close(self) -> None:
        return None

    async def ask(self, request: ProviderRequest, beat: Beat, meter: Meter) -> ProviderAnswer:
        """Computed, not bought: nothing is reserved or metered."""
        if request.task == "review":
            found = await ruff_findings(request.files)
            return ProviderAnswer({"findings": [finding_public(f) for f in found]}, ProviderUsage())
        if request.task == "tests":
            if request.payload.get("failures"):
                # The ghostwriter would write the same tests again: nothing to fix offline.
                return ProviderAnswer(
                    {"code": "\n", "notes": "offline: no repair"}, ProviderUsage()
                )
            path, module = str(request.payload["path"]), str(request.payload["module"])
            source = next((f.content for f in request.files if f.path == path), None)
            if source is None:
                raise ProviderError(f"{path} is not among the job's files", "invalid_answer")
            code = await asyncio.to_thread(ghostwrite, module, source)
            notes = "written by Hypothesis' ghostwriter from the module's signatures"
            return ProviderAnswer({"code": code, "notes": notes}, ProviderUsage())
        raise ProviderError(NOT_CONFIGURED.format(task=request.task), "not_configured")


def _safe_annotation(node: ast.expr | None) -> bool:
    if node is None:
        return True
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            if child.id not in _SAFE_NAMES:
                return False
        elif not isinstance(
            child, ast.Subscript | ast.Tuple | ast.BinOp | ast.BitOr | ast.Constant | ast.Load
        ):
            return False
    return not isinstance(node, ast.Constant) or node.value is None


def _stub_function(node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.FunctionDef:
    args = node.args
    for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
        if not _safe_annotation(arg.annotation):
            arg.annotation = None
    for extra in (args.vararg, args.kwarg):
        if extra is not None and not _safe_annotation(extra.annotation):
            extra.annotation = None
    defaults: list[ast.expr] = []
    for default in args.defaults:
        defaults.append(default if _literal(default) else ast.Constant(None))
    args.defaults = defaults
    args.kw_defaults = [
        None if d is None else (d if _literal(d) else ast.Constant(None)) for d in args.kw_defaults
    ]
    returns = node.returns if _safe_annotation(node.returns) else None
    body: list[ast.stmt] = [ast.Expr(ast.Constant(...))]
    docstring = ast.get_docstring(node)
    if docstring:
        body.insert(0, ast.Expr(ast.Constant(docstring)))
    return ast.FunctionDef(name=node.name, args=args, body=body, decorator_list=[], returns=returns)


def _literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def stub_module(name: str, source: str) -> types.ModuleType:
    """A module with the public functions of `source`: same signatures, empty bodies."""
    tree = ast.parse(source)
    functions = [
        _stub_function(node)
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and not node.name.startswith("_")
        and not isinstance(node, ast.AsyncFunctionDef)
    ]
    stub = ast.fix_missing_locations(ast.Module(body=list(functions), type_ignores=[]))
    module = types.ModuleType(name)
    namespace: dict[str, Any] = module.__dict__
    namespace["__builtins__"] = {n: __builtins__[n] for n in _SAFE_NAMES if n != "None"}  # type: ignore[index]
    exec(compile(stub, f"<stub of {name}>", "exec"), namespace)
    module.__all__ = [f.name for f in functions]  # type: ignore[attr-defined]
    for function in functions:
        getattr(module, function.name).__module__ = name
    return module


def ghostwrite(module_name: str, source: str) -> str:
    """Hypothesis' ghostwriter on a stub of `source`, importing `module_name` in its tests."""
    from hypothesis.extra import ghostwriter

    # The ghostwriter looks the module up in sys.modules: register the stub under a name no
    # real module has, for as long as it writes, then name the real module in its output.
    alias = f"vf_stub_{uuid.uuid4().hex}"
    sys.modules[alias] = stub_module(alias, source)
    try:
        code: str = ghostwriter.magic(sys.modules[alias])
    finally:
        del sys.modules[alias]
    return code.replace(alias, module_name)
