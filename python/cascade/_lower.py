"""Lowering: the graph of task calls -> a pipeline document (the mapping a ci.yaml holds).

One task call is one job whose command is `python3 -m cascade.runner`. Its `CSPY_TASK`
says which function to call and where each argument comes from; the `CSPY_ARG_n`
variables bind the arguments that exist only at run time (`${{ needs.X.outputs.result }}`,
the map item, `${{ inputs.p }}`). Not `CASCADE_*` names: the pipeline parser reserves
them and the engine sets `CASCADE_TASK` to the task id.

A `.map()` is a job with `for_each`: literal lists become a list of JSON texts (a static
`for_each` item is a string to the parser), one lazy list `fromJSON(...)` of it, and a
lazy list zipped with others gets a builtin zip job in front of the map."""

from __future__ import annotations

import itertools
import json
import os
import sys

from ._graph import ARG_VAR, MISSING, TASK_VAR, BuildError, LazyResult, Param, Task

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

RUN = "python3 -m cascade.runner"
ZIP_ENTRY = "cascade._builtins:zip_lists"
# A job that needs a mapped job runs even when the map was empty (its job is skipped),
# so that a fan-in receives [].
AFTER_MAP = "${{ !failure() && !cancelled() }}"


class Lowered:
    """A rendered pipeline: the document and where each job was written (`sources`)."""

    __slots__ = ("document", "sources")

    def __init__(self, document: dict[str, Any], sources: dict[str, dict[str, Any]]) -> None:
        self.document = document
        self.sources = sources


def render(target: LazyResult[Any] | Callable[[], Any]) -> dict[str, Any]:
    """The pipeline document (a ci.yaml-shaped dict) that computes `target`: the
    LazyResult a pipeline function returned, or the pipeline function itself."""
    return lower(target).document


def relative(path: str) -> str:
    """A path as the document and diagnostics write it: relative to the working directory
    when inside it, with `/`."""
    absolute = os.path.abspath(path)
    cwd = os.getcwd()
    if absolute == cwd or absolute.startswith(cwd.rstrip(os.sep) + os.sep):
        return os.path.relpath(absolute, cwd).replace(os.sep, "/")
    return absolute.replace(os.sep, "/")


def lower(target: Any, name: str | None = None) -> Lowered:
    """Lowers the graph reachable from `target` (a LazyResult, a list or tuple of them, or
    a pipeline function to call). `name` is the pipeline name; by default the function
    that built the target."""
    if callable(target) and not isinstance(target, (LazyResult, Task)):
        name = name or getattr(target, "__name__", None)
        target = target()
    roots = list(target) if isinstance(target, (list, tuple)) else [target]
    if not roots:
        raise BuildError(
            "the pipeline returned an empty list; return the LazyResult of the task that ends it"
        )
    for root in roots:
        if not isinstance(root, LazyResult):
            found = "a task (call it)" if isinstance(root, Task) else type(root).__name__
            raise BuildError(
                f"cs.render takes the LazyResult a pipeline function returns (a task call), found {found}"
            )
    if name is None:
        fn = roots[0]._site.function
        name = (
            fn if fn != "<module>" else os.path.splitext(os.path.basename(roots[0]._site.file))[0]
        )
    return _Lowering(roots, name).run()


def _deps(node: LazyResult[Any]) -> list[LazyResult[Any]]:
    out = [v for v in node._args.values() if isinstance(v, LazyResult)]
    if node._mapped:
        out += [v for v in node._mapped.values() if isinstance(v, LazyResult)]
    out += [dep for dep, _, _ in node._after]
    return out


def _params(node: LazyResult[Any]) -> list[Param[Any]]:
    values = list(node._args.values()) + list((node._mapped or {}).values())
    return [v for v in values if isinstance(v, Param)]


class _Lowering:
    def __init__(self, roots: list[LazyResult[Any]], name: str) -> None:
        self.roots = roots
        self.name = name
        self.ids: dict[int, str] = {}
        self.taken: set[str] = set()

    def run(self) -> Lowered:
        nodes = self._reachable()
        self._check_acyclic(nodes)
        counts: dict[str, int] = {}
        for node in nodes:
            self.ids[id(node)] = self._take(node._task.name, counts)
        inputs = self._inputs(nodes)
        jobs: dict[str, Any] = {}
        sources: dict[str, dict[str, Any]] = {}
        for node in nodes:
            for job_id, job in self._jobs(node, counts):
                jobs[job_id] = job
                sources[job_id] = {"file": relative(node._site.file), "line": node._site.line}
        document: dict[str, Any] = {
            "name": self.name,
            "on": {"workflow_dispatch": {"inputs": inputs}},
            "jobs": jobs,
        }
        return Lowered(document, sources)

    def _take(self, base: str, counts: dict[str, int]) -> str:
        """`base` for its first job, then `base_2`, `base_3`, … skipping ids in use."""
        while True:
            n = counts.get(base, 0) + 1
            counts[base] = n
            job_id = base if n == 1 else f"{base}_{n}"
            if job_id not in self.taken and len(job_id) <= 100:
                self.taken.add(job_id)
                return job_id

    def _reachable(self) -> list[LazyResult[Any]]:
        seen: dict[int, LazyResult[Any]] = {}
        stack = list(self.roots)
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen[id(node)] = node
            stack.extend(_deps(node))
        return sorted(seen.values(), key=lambda n: n._seq)

    def _check_acyclic(self, nodes: list[LazyResult[Any]]) -> None:
        """Data edges always point to an earlier call; only .after() can close a cycle, and
        the latest .after() of the cycle is reported (the one that closed it)."""
        state: dict[int, int] = {}

        def visit(node: LazyResult[Any], path: list[LazyResult[Any]]) -> None:
            state[id(node)] = 1
            for dep in _deps(node):
                if state.get(id(dep)) == 1:
                    cycle = (
                        [*path[[id(n) for n in path].index(id(dep)) :], node, dep]
                        if any(n is dep for n in path)
                        else [node, dep]
                    )
                    names = " -> ".join(n._task.name for n in cycle)
                    edges = [
                        (seq, site)
                        for waiter, waited in itertools.pairwise(cycle)
                        for d, site, seq in waiter._after
                        if d is waited
                    ]
                    site = max(edges, key=lambda e: e[0])[1] if edges else node._site
                    raise site.error(f"the tasks wait for each other in a cycle: {names}")
                if id(dep) not in state:
                    visit(dep, [*path, node])
            state[id(node)] = 2

        for node in nodes:
            if id(node) not in state:
                visit(node, [])

    def _inputs(self, nodes: list[LazyResult[Any]]) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        first: dict[str, Param[Any]] = {}
        for node in nodes:
            for param in _params(node):
                earlier = first.get(param.name)
                if earlier is not None:
                    if earlier is not param and earlier.default != param.default:
                        raise param.site.error(
                            f"cs.Param({param.name!r}) is declared twice with different defaults "
                            f"({earlier.default!r} at {relative(earlier.site.file)}:{earlier.site.line}); "
                            "declare it once and pass the same object"
                        )
                    continue
                first[param.name] = param
                if param.default is MISSING:
                    inputs[param.name] = {"required": True}
                else:
                    try:
                        text = json.dumps(param.default)
                    except (TypeError, ValueError):
                        raise param.site.error(
                            f"the default of cs.Param({param.name!r}) is a {type(param.default).__name__}, "
                            "which is not JSON; give str, int, float, bool, None, or lists and dicts of them"
                        ) from None
                    inputs[param.name] = {"default": text}
        return inputs

    def _ref(self, node: LazyResult[Any]) -> str:
        return self.ids[id(node)]

    def _jobs(
        self, node: LazyResult[Any], counts: dict[str, int]
    ) -> list[tuple[str, dict[str, Any]]]:
        task = node._task
        job_id = self._ref(node)
        out: list[tuple[str, dict[str, Any]]] = []
        needs: set[str] = set()
        after_map = False
        env: dict[str, str] = {}
        bindings: dict[str, str] = {}
        args: dict[str, Any] = {}

        def bind(text: str) -> str:
            if text not in bindings:
                bindings[text] = f"{ARG_VAR}{len(bindings)}"
                env[bindings[text]] = text
            return bindings[text]

        def need(dep: LazyResult[Any]) -> None:
            nonlocal after_map
            needs.add(self._ref(dep))
            after_map = after_map or dep.is_mapped

        def whole(value: Any) -> dict[str, Any]:
            if isinstance(value, LazyResult):
                need(value)
                if value.is_mapped:
                    return {
                        "env": bind(f"${{{{ toJSON(needs.{self._ref(value)}.outputs.result) }}}}"),
                        "kind": "fanin",
                    }
                return {
                    "env": bind(f"${{{{ needs.{self._ref(value)}.outputs.result }}}}"),
                    "kind": "value",
                }
            if isinstance(value, Param):
                return {"env": bind(f"${{{{ inputs.{value.name} }}}}"), "kind": "param"}
            return {"kind": "const", "value": value}

        job: dict[str, Any] = {}
        mapped = node._mapped
        item_key = False
        if mapped is not None:
            lazy = [v for v in mapped.values() if not isinstance(v, list)]
            if not lazy and len(mapped) == 1:
                (values,) = mapped.values()
                job["for_each"] = [json.dumps(v) for v in values]
                item = "${{ item }}"
            elif not lazy:
                names = list(mapped)
                rows = zip(*(mapped[p] for p in names), strict=True)
                job["for_each"] = [json.dumps(dict(zip(names, row, strict=True))) for row in rows]
                item = "${{ item }}"
                item_key = True
            elif len(mapped) == 1 and (isinstance(lazy[0], Param) or not lazy[0].is_mapped):
                source = lazy[0]
                if isinstance(source, Param):
                    job["for_each"] = f"${{{{ fromJSON(inputs.{source.name}) }}}}"
                else:
                    need(source)
                    job["for_each"] = (
                        f"${{{{ fromJSON(needs.{self._ref(source)}.outputs.result) }}}}"
                    )
                item = "${{ toJSON(item) }}"
            else:
                zip_id, zip_job = self._zip_job(node, mapped, counts)
                out.append((zip_id, zip_job))
                needs.add(zip_id)
                job["for_each"] = f"${{{{ fromJSON(needs.{zip_id}.outputs.result) }}}}"
                item = "${{ toJSON(item) }}"
                item_key = True
        for param, value in node._args.items():
            if mapped is not None and param in mapped:
                spec: dict[str, Any] = {"env": bind(item), "kind": "item"}
                if item_key:
                    spec["key"] = param
                args[param] = spec
            else:
                args[param] = whole(value)
        for dep, _, _ in node._after:
            need(dep)
        entry = _entry(task.fn)
        spec_json: dict[str, Any] = {"entry": entry[0], "args": args, "async": task.is_async}
        if entry[1] is not None:
            spec_json["path"] = entry[1]
        job_env = {TASK_VAR: _spec_text(spec_json), **env, **task.env}
        lowered: dict[str, Any] = {}
        if needs:
            lowered["needs"] = sorted(needs)
        if after_map:
            lowered["if"] = AFTER_MAP
        lowered.update(job)
        lowered["run"] = RUN
        lowered["env"] = job_env
        lowered["outputs"] = {"result": "file"}
        if task.retry is not None:
            lowered["retry"] = task.retry.to_json()
        if task.timeout is not None:
            lowered["timeout"] = task.timeout
        secrets = sorted(set(task.secrets) | set(_declared(task)))
        if secrets:
            lowered["secrets"] = secrets
        if task.runner is not None:
            lowered["runner"] = task.runner
        if task.image is not None:
            lowered["image"] = task.image
        if task.resources is not None:
            lowered["resources"] = task.resources
        out.append((job_id, lowered))
        return out

    def _zip_job(
        self, node: LazyResult[Any], mapped: dict[str, Any], counts: dict[str, int]
    ) -> tuple[str, dict[str, Any]]:
        """A job that zips the lists of a `.map()` when one of them exists only at run time."""
        zip_id = self._take(f"{self._ref(node)}_zip", counts)
        needs: set[str] = set()
        env: dict[str, str] = {}
        args: dict[str, Any] = {}
        after_map = False
        for n, (param, value) in enumerate(mapped.items()):
            if isinstance(value, LazyResult):
                ref = self._ref(value)
                needs.add(ref)
                after_map = after_map or value.is_mapped
                text = (
                    f"${{{{ toJSON(needs.{ref}.outputs.result) }}}}"
                    if value.is_mapped
                    else f"${{{{ needs.{ref}.outputs.result }}}}"
                )
                env[f"{ARG_VAR}{n}"] = text
                args[param] = {
                    "env": f"{ARG_VAR}{n}",
                    "kind": "fanin" if value.is_mapped else "value",
                }
            elif isinstance(value, Param):
                env[f"{ARG_VAR}{n}"] = f"${{{{ inputs.{value.name} }}}}"
                args[param] = {"env": f"{ARG_VAR}{n}", "kind": "param"}
            else:
                args[param] = {"kind": "const", "value": value}
        job: dict[str, Any] = {}
        if needs:
            job["needs"] = sorted(needs)
        if after_map:
            job["if"] = AFTER_MAP
        spec = {"entry": ZIP_ENTRY, "args": args, "async": False}
        job["run"] = RUN
        job["env"] = {TASK_VAR: _spec_text(spec), **{k: env[k] for k in sorted(env)}}
        job["outputs"] = {"result": "file"}
        return zip_id, job


def _spec_text(spec: dict[str, Any]) -> str:
    """The CSPY_TASK value: the JSON text, or base64 of it when it holds `${{` (which an
    env value would otherwise read as an expression)."""
    text = json.dumps(spec, separators=(",", ":"))
    if "${{" in text:
        import base64

        return json.dumps({"b64": base64.b64encode(text.encode()).decode()}, separators=(",", ":"))
    return text


def _entry(fn: Callable[..., Any]) -> tuple[str, str | None]:
    """How the task process finds `fn`: `path/file.py:qualname` for a module loaded from a
    file as `__main__` or by path, else `package.module:qualname` and, when the module's
    import root is a folder under the working directory other than itself, that folder
    (the runner puts it on `sys.path`)."""
    module_name = fn.__module__
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    qualname = fn.__qualname__
    if file is None:
        return f"{module_name}:{qualname}", None
    if module_name == "__main__" or getattr(module, "__cascade_path__", None) is not None:
        return f"{relative(file)}:{qualname}", None
    root = os.path.dirname(os.path.abspath(file))
    depth = module_name.count(".") + (1 if os.path.basename(file) == "__init__.py" else 0)
    for _ in range(depth):
        root = os.path.dirname(root)
    rel = relative(root)
    if rel == "." or rel.startswith("/") or "site-packages" in rel.split("/"):
        return f"{module_name}:{qualname}", None
    return f"{module_name}:{qualname}", rel


def _declared(task: Task[..., Any]) -> list[str]:
    """The names the task's body reads with `cs.Env("NAME")`; a name that is not a literal
    is a build error at its line (the engine must know every name before the run)."""
    from ._env import UndeclarableEnv, declared_names

    try:
        return declared_names(task.fn)
    except UndeclarableEnv as e:
        raise BuildError(e.detail, e.file, e.line) from e
