"""Task cache keys, computed locally: pure functions over the resolved :class:`~compose_kfp.pipeline.graph.TaskGraph`.

A task's key is the sha256 (hex) of a canonical JSON (keys sorted, no spaces, UTF-8) of its *key material*::

    {"version": "compose-kfp-task-key/1",
     "image": "sha256:...",          # the manifest digest the task's image reference pins (else the reference)
     "implementation": {...},        # the component's command and args *templates* (placeholders as data), its
                                     # env, fileOutputs and output names, the step's env and the task's env/Secret
                                     # references (by name, never values)
     "inputs": {INPUT: MATERIAL}}    # one per argument, by input name

where an input's material is ``{"value": TEXT}`` for a literal, a default or a param (the text the command
receives: :func:`~compose_kfp.pipeline.graph.literal_text`), ``{"task": UPSTREAM KEY, "output": NAME}`` for an
upstream output (``"collect": true`` for a collected loop output), so a change upstream changes every key
downstream, ``{"item": FIELD or null}`` for the loop item and ``{"status": true}`` for the exit handler's status.
``after`` dependencies and conditions carry no data and are not part of a key.

A ``for_each`` task has three keys: its *base* key (the material above), one key per iteration
(:func:`iteration_key`: the base key and the item, so adding an item re-runs only that item) and its *task* key
(the base key and the loop's items or source, so collectors downstream re-run when the list changes).
Changing :data:`KEY_VERSION` changes every key (a new key format invalidates old entries).

Readers: ``plan`` (:func:`compare` with the keys recorded by the last ``apply``/``run --local``), the Argo renderer
(``memoize``; :func:`argo_key` and :func:`runtime_params`), the KFP renderer (an annotation) and the local runner
(results under ``.compose-kfp/cache/tasks/<key>/``, :mod:`compose_kfp.localrun.cache`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from compose_kfp import schema
from compose_kfp.pipeline.graph import Task, TaskGraph
from compose_kfp.planner import TaskCache

__all__ = ["KEY_VERSION", "TaskKey", "TaskCache", "task_keys", "iteration_key", "compare", "cache_settings",
           "caches", "runtime_params", "argo_max_age", "digest_of"]

#: The first field of every key's material; bump it when the material changes shape.
KEY_VERSION = "compose-kfp-task-key/1"
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}


def digest_of(material: Any) -> str:
    """sha256 hex of the canonical JSON of ``material`` (keys sorted, compact, UTF-8)."""
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"not JSON material: {type(value).__name__}")


@dataclasses.dataclass(frozen=True)
class TaskKey:
    """The cache key of one task and the digests of its parts (for reasons in ``plan``).

    Attributes:
        task: the task name.
        key: the task key (a loop's key includes its items; see the module docstring).
        base: the key without the loop (:func:`iteration_key` starts from it); equals ``key`` without ``for_each``.
        image: the image digest (or reference) in the material.
        implementation: digest of the implementation material.
        inputs: digest of the inputs (and loop) material.
        upstream: the tasks whose keys are in the inputs, in graph order.
    """

    task: str
    key: str
    base: str
    image: str
    implementation: str
    inputs: str
    upstream: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """What ``.compose-kfp/task-keys.json`` records per task."""
        return {"key": self.key, "image": self.image, "implementation": self.implementation, "inputs": self.inputs}


def _image_id(image: str | None) -> str:
    if image is None:
        return ""
    return image.rpartition("@")[2] if "@sha256:" in image else image


def _implementation(task: Task) -> dict[str, Any]:
    c = task.component
    return {"command": list(c.command), "args": list(c.args), "env": [list(e) for e in c.env],
            "file_outputs": [list(f) for f in c.file_outputs], "outputs": [o.name for o in c.outputs],
            "python_function": c.python_function, "step_env": dict(task.settings.env),
            "env_refs": [[name, ref] for name, ref in task.env_refs], "secret_volumes": list(task.secret_volumes)}


def task_keys(graph: TaskGraph, params: Mapping[str, str] | None = None) -> dict[str, TaskKey]:
    """Task name -> :class:`TaskKey` for every task (the exit handler included), in graph order.

    ``params``: param name -> the text the run gives it (default: each param's default text).
    """
    values = {p.name: p.default_text for p in graph.params}
    values.update(params or {})
    keys: dict[str, TaskKey] = {}
    for task in graph.all_tasks:
        inputs: dict[str, Any] = {}
        upstream: list[str] = []
        for arg in task.arguments:
            if arg.source == "literal":
                inputs[arg.input] = {"value": arg.text}
            elif arg.source == "param":
                inputs[arg.input] = {"value": values[arg.param]}
            elif arg.source == "task":
                inputs[arg.input] = {"task": keys[arg.task].key, "output": arg.output, "collect": arg.collect}
                upstream.append(arg.task)
            elif arg.source == "item":
                inputs[arg.input] = {"item": arg.item_field}
            else:
                inputs[arg.input] = {"status": True}
        image, implementation = _image_id(task.image), _implementation(task)
        base = digest_of({"version": KEY_VERSION, "image": image, "implementation": implementation,
                          "inputs": inputs})
        key, loop_material = base, None
        if task.loop is not None:
            loop = task.loop
            if loop.source == "task":
                loop_material = {"task": keys[loop.task].key, "output": loop.output}
                upstream.append(loop.task)
            else:
                loop_material = {"items": values[loop.param] if loop.source == "param" else list(loop.items or ())}
            key = digest_of({"version": KEY_VERSION, "task": base, "for_each": loop_material})
        keys[task.name] = TaskKey(task.name, key, base, image, digest_of(implementation),
                                  digest_of({"inputs": inputs, "for_each": loop_material}),
                                  tuple(dict.fromkeys(upstream)))
    return keys


def iteration_key(base: str, item: Any) -> str:
    """The key of one ``for_each`` iteration: the task's base key (:attr:`TaskKey.base`) and the item."""
    return digest_of({"version": KEY_VERSION, "task": base, "item": item})


def cache_settings(manifest: schema.Manifest) -> schema.CacheConfig:
    """``[pipeline.cache]`` of ``manifest`` (defaults without a ``[pipeline]``)."""
    return manifest.pipeline.cache if manifest.pipeline is not None else schema.CacheConfig()


def caches(manifest: schema.Manifest, task: Task) -> bool:
    """Whether ``task``'s results are cached: caching on, the task's ``cache`` not ``false``, not the exit handler."""
    pipeline = manifest.pipeline
    return (cache_settings(manifest).enabled and not task.exit_handler and pipeline is not None
            and (task.name not in pipeline.tasks or pipeline.tasks[task.name].cache))


def compare(graph: TaskGraph, manifest: schema.Manifest, keys: Mapping[str, TaskKey],
            recorded: Mapping[str, Mapping[str, Any]], image_notes: Mapping[str, str] | None = None
            ) -> tuple[TaskCache, ...]:
    """Each task of ``graph`` (graph order, the exit handler last) against the ``recorded`` keys
    (task -> :meth:`TaskKey.to_dict` of the last apply or run): ``cached`` when the key is the same, else
    ``re-runs`` with the first reason that holds: caching off; never recorded; its image changed (with
    ``image_notes[step]``, e.g. the layers that changed); its command changed; an upstream task re-runs;
    its inputs changed. A task missing from ``keys`` (an image digest known only after apply) re-runs."""
    out: list[TaskCache] = []
    status: dict[str, str] = {}
    for task in graph.all_tasks:
        k, before = keys.get(task.name), recorded.get(task.name) or {}
        note = (image_notes or {}).get(task.step)
        if task.exit_handler:
            line = TaskCache(task.name, "re-runs", "the exit handler is never cached")
        elif not caches(manifest, task):
            line = TaskCache(task.name, "re-runs", "caching is off for this task")
        elif k is None:
            line = TaskCache(task.name, "re-runs", "its key is known after apply (an image digest is)")
        elif before.get("key") == k.key:
            line = TaskCache(task.name, "cached", key=k.key)
        elif not before:
            line = TaskCache(task.name, "re-runs", "no key recorded by an apply or run yet", k.key)
        elif before.get("image") != k.image:
            line = TaskCache(task.name, "re-runs", "its image changed" + (f" ({note})" if note else ""), k.key)
        elif before.get("implementation") != k.implementation:
            line = TaskCache(task.name, "re-runs", "its command changed", k.key)
        elif any(status.get(u) == "re-runs" for u in k.upstream):
            ups = ", ".join(u for u in k.upstream if status.get(u) == "re-runs")
            line = TaskCache(task.name, "re-runs", f"an upstream task re-runs ({ups})", k.key)
        else:
            line = TaskCache(task.name, "re-runs", "its inputs changed", k.key)
        status[task.name] = line.status
        out.append(line)
    return tuple(out)


def runtime_params(graph: TaskGraph) -> dict[str, tuple[str, ...]]:
    """Task name -> the params whose run-time value reaches its inputs, directly or through upstream tasks
    (an upstream loop's list param included; a task's own loop list is not: an iteration depends on its item), sorted. Argo may be given other values than the defaults the key was
    computed with, so the memoize key adds these values (:func:`compose_kfp.pipeline.render.workflow`)."""
    own: dict[str, set[str]] = {}
    found: dict[str, set[str]] = {}  # what reaches the task's outputs as a whole (its loop's list included)
    for task in graph.all_tasks:
        names: set[str] = set()
        for arg in task.arguments:
            if arg.source == "param":
                names.add(arg.param)
            elif arg.source == "task":
                names |= found[arg.task]
        own[task.name], found[task.name] = names, set(names)
        if task.loop is not None:  # an iteration depends on its item, not on the list it came from
            found[task.name] |= {task.loop.param} if task.loop.source == "param" else set()
            found[task.name] |= found[task.loop.task] if task.loop.source == "task" else set()
    return {name: tuple(sorted(names)) for name, names in own.items()}


def argo_max_age(text: str) -> str:
    """``max_age`` as Argo's ``maxAge`` (Go's ``time.ParseDuration``, which has no days): unchanged without
    ``d``; else the total as whole hours (``7d`` -> ``168h``), or seconds when it is not a whole number of hours."""
    if "d" not in text:
        return text
    seconds = sum(float(n) * _SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
    return f"{round(seconds / 3600)}h" if seconds % 3600 == 0 else f"{round(seconds)}s"
