"""Rendering the Argo Workflow of a pipeline (``workflow.yaml.j2``) from the resolved task graph.

:func:`workflow_context` turns a :class:`~compose_kfp.pipeline.graph.TaskGraph` and the
pipeline settings of ``kfp.toml`` into plain data (dicts, lists, strings and
numbers); :func:`render_workflow` renders ``workflow.yaml.j2`` with it through
the shared environment (:func:`compose_kfp.pipeline.render.make_environment`), so a user
template folder (``[render] templates``) can replace the template.

The Workflow follows the Argo ``io.argoproj.workflow.v1alpha1.Workflow`` schema
(https://argo-workflows.readthedocs.io/en/latest/fields/):

- ``metadata.generateName`` is the DNS-1123 pipeline name plus ``-``;
  ``spec.arguments.parameters`` are the pipeline params with their defaults;
- ``spec.entrypoint`` is a DAG template with one task per graph task and
  ``dependencies`` from the graph (data and ``after``);
- one container template per step that is used; a step whose tasks need
  different command lines or wiring (an optional input given in one task and not
  in another, an output consumed by value in one task only) gets one template per
  distinct variant, named ``<step>``, ``<step>-2``, ...;
- values reach containers as template input parameters (``{{inputs.parameters.x}}``);
  files as input artifacts at ``/tmp/inputs/<x>/data`` (``from`` an upstream output
  artifact, or ``raw`` data for a literal or param consumed as a file); outputs are
  written to ``/tmp/outputs/<y>/data`` (or the component's ``fileOutputs`` path, as KFP v1
  compiles it: :func:`~compose_kfp.steps.placeholders.component_output_path`) and exported as an output parameter
  (``valueFrom.path``) when a consumer reads the value, as an output artifact when a
  consumer reads the file (and, when nobody consumes it, by its type);
- with ``pipeline.data_passing = "volume"`` files stay on one volume per workflow
  (``volumeClaimTemplates``) mounted at ``/mnt/compose-kfp``; each task writes under
  ``/mnt/compose-kfp/<task>/`` and consumers receive the upstream path as a parameter;
- with control flow (:attr:`TaskGraph.has_control_flow <compose_kfp.pipeline.graph.TaskGraph.has_control_flow>`)
  every DAG task has ``depends`` instead of ``dependencies`` (``x.Succeeded``, see ``_Builder._depends``),
  a condition becomes ``when`` (:func:`compose_kfp.pipeline.conditions.argo_expression`), ``for_each``
  ``withItems``/``withParam`` (with ``parallelism``, inside a DAG template of its own), a collected output
  the aggregated ``{{tasks.T.outputs.parameters.P}}``, the exit handler a DAG template named by ``onExit``;
  task ``env`` references become ``valueFrom.secretKeyRef``/``configMapKeyRef``, ``secret_volumes`` template
  ``volumes`` mounted read-only;
- with caching on (``[pipeline.cache]``, default), each container template memoizes its outputs
  (``memoize: {key, maxAge, cache: {configMap: {name}}}``) under the task's locally computed cache key
  (:mod:`compose_kfp.pipeline.cache`): a literal key when one task uses the template and no run-time value
  reaches it; a template shared by several tasks receives each task's key as the input parameter
  ``compose-kfp-cache-key``; params (which a submission may override) and loop items reach the key through
  ``{{=sprig.sha256sum(...)}}`` of ``workflow.parameters`` and ``inputs.parameters`` (Argo keys allow only
  letters, digits and ``-``). No memoize on the exit handler, on tasks with ``cache = false``, or on a loop whose
  item reaches the command only as a file;
- placeholders are resolved with :func:`compose_kfp.steps.placeholders.resolve_command_line`,
  the same resolver the local runner uses; literal strings in third-party commands
  (``{{workflow.uid}}``) pass through unchanged.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from compose_kfp import schema
from compose_kfp.errors import RenderError
from compose_kfp.pipeline.cache import argo_max_age, cache_settings, caches, runtime_params, task_keys
from compose_kfp.pipeline.conditions import argo_expression
from compose_kfp.pipeline.graph import Argument, Task, TaskGraph, dns1123_name
from compose_kfp.steps.placeholders import component_output_path, input_path, io_name
from compose_kfp.pipeline.render import make_environment, render_template

__all__ = ["render_workflow", "workflow_context", "VOLUME_NAME", "VOLUME_MOUNT", "TASK_DIR_PARAM", "WORKFLOW_TEMPLATE"]

log = logging.getLogger(__name__)

#: Template file rendered by :func:`render_workflow`.
WORKFLOW_TEMPLATE = "workflow.yaml.j2"
#: Name of the shared volume (``volumeClaimTemplates``) for ``data_passing = "volume"``.
VOLUME_NAME = "compose-kfp-data"
#: Where the shared volume is mounted in every container.
VOLUME_MOUNT = "/mnt/compose-kfp"
#: Input parameter of a container template, in volume mode, holding the task's folder on the volume.
TASK_DIR_PARAM = "compose-kfp-task-dir"
#: Input parameter of a container template shared by several tasks: the calling task's cache key.
CACHE_KEY_PARAM = "compose-kfp-cache-key"

_LABEL_MANAGED = "app.kubernetes.io/managed-by"
_LABEL_PIPELINE = "compose-kfp.io/pipeline"
_LABEL_STEP = "compose-kfp.io/step"


def render_workflow(graph: TaskGraph, manifest: schema.Manifest, *, templates_dir: Path | None = None) -> str:
    """Render the Argo Workflow YAML of ``graph``.

    Args:
        graph: the resolved graph; every task must have an image (resolve with ``images=``).
        manifest: the ``kfp.toml`` the graph came from (pipeline-level settings).
        templates_dir: a folder overriding built-in templates; default: ``[render] templates``
            of ``manifest`` relative to ``graph.manifest_path``, or the built-ins only.

    Returns:
        The Workflow as YAML text (one document).

    Raises:
        RenderError: a task has no image, names collide after sanitizing, or the template fails.
        ConfigError: a placeholder cannot be resolved (see :func:`~compose_kfp.steps.placeholders.resolve_command_line`).
    """
    if templates_dir is None and manifest.render.templates:
        templates_dir = graph.manifest_path.parent / manifest.render.templates
    env = make_environment(templates_dir)
    return render_template(env, WORKFLOW_TEMPLATE, **workflow_context(graph, manifest))


def workflow_context(graph: TaskGraph, manifest: schema.Manifest) -> dict[str, Any]:
    """The data ``workflow.yaml.j2`` receives: ``{"workflow": {...}}`` (plain data only; see the module docstring).

    Keys of ``workflow``: ``generate_name``, ``name``, ``description``, ``labels``, ``entrypoint``,
    ``params`` (list of ``{name, value}``), ``service_account``, ``image_pull_secrets`` (names),
    ``parallelism``, ``ttl``, ``pod_gc``, ``volume`` (``None`` or ``{name, mount_path, size,
    storage_class, access_modes}``), ``dag`` (``{name, tasks}``; each task ``{name, template,
    dependencies, parameters, artifacts}``) and ``templates`` (container templates; each
    ``{name, image, command, args, env, inputs, outputs, resources, retry, timeout,
    node_selector, tolerations, volume_mounts, memoize}``; ``memoize`` is ``None`` or
    ``{key, maxAge, cache: {configMap: {name}}}``).
    """
    pipeline = manifest.pipeline or schema.PipelineConfig()
    volume_mode = pipeline.data_passing == "volume"
    builder = _Builder(graph, volume_mode, manifest)
    dag_tasks = [builder.task(task) for task in graph.tasks]
    exit_dag = None
    if graph.exit_task is not None:
        exit_dag = {"name": builder.unique_name(f"{graph.k8s_name}-exit"), "tasks": [builder.task(graph.exit_task)]}
    builder.memoize([*dag_tasks, *(exit_dag["tasks"] if exit_dag else []),
                     *(t for w in builder.loop_templates for t in w["tasks"])])
    templates = builder.templates
    entrypoint = graph.k8s_name
    if entrypoint in builder.names:
        entrypoint = dns1123_name(f"{graph.k8s_name}-pipeline")
    volume = None
    if volume_mode:
        volume = {"name": VOLUME_NAME, "mount_path": VOLUME_MOUNT, "size": pipeline.volume.size,
                  "storage_class": pipeline.volume.storage_class, "access_modes": list(pipeline.volume.access_modes)}
    return {"workflow": {
        "name": graph.name,
        "generate_name": f"{graph.k8s_name}-",
        "description": graph.description,
        "labels": {_LABEL_MANAGED: "compose-kfp", _LABEL_PIPELINE: graph.k8s_name},
        "entrypoint": entrypoint,
        "params": [{"name": p.name, "value": p.default_text} for p in graph.params],
        "service_account": pipeline.service_account,
        "image_pull_secrets": list(pipeline.image_pull_secrets),
        "parallelism": pipeline.parallelism,
        "ttl": pipeline.ttl,
        "pod_gc": pipeline.pod_gc,
        "volume": volume,
        "dag": {"name": entrypoint, "tasks": dag_tasks},
        "exit_dag": exit_dag,
        "loop_templates": builder.loop_templates,
        "templates": templates,
    }}


class _Builder:
    """Builds DAG tasks and deduplicated container templates, task by task in graph order."""

    def __init__(self, graph: TaskGraph, volume_mode: bool, manifest: schema.Manifest | None = None) -> None:
        self.graph = graph
        self.volume_mode = volume_mode
        self.manifest = manifest
        self.keys = task_keys(graph)
        self.runtime = runtime_params(graph)
        self._task_of: dict[int, Task] = {}  # id(DAG task dict calling a container template) -> its task
        self.templates: list[dict[str, Any]] = []
        self.loop_templates: list[dict[str, Any]] = []
        self._by_content: dict[str, str] = {}
        self.names: set[str] = set()

    def unique_name(self, base: str) -> str:
        """``base`` as a DNS-1123 template name not used yet (``-2``, ``-3``, ... appended when needed); reserved."""
        base = dns1123_name(base) or "template"
        name, n = base, 1
        while name in self.names:
            n += 1
            name = dns1123_name(f"{base[:58]}-{n}")
        self.names.add(name)
        return name

    def fail(self, task: Task, message: str) -> RenderError:
        return RenderError(f"{task.where}: {message}")

    def _upstream_io(self, arg: Argument) -> tuple[str, str]:
        up = self.graph.task(arg.task)
        return up.k8s_name, io_name(arg.output)

    def _source_expr(self, arg: Argument, kind: str = "parameters") -> str:
        if arg.source == "literal":
            return arg.text
        if arg.source == "param":
            return f"{{{{workflow.parameters.{arg.param}}}}}"
        if arg.source == "item":
            return f"{{{{item.{arg.item_field}}}}}" if arg.item_field else "{{item}}"
        if arg.source == "status":
            return "{{workflow.status}}"
        up, out = self._upstream_io(arg)
        return f"{{{{tasks.{up}.outputs.{kind}.{out}}}}}"

    def task(self, task: Task) -> dict[str, Any]:
        if task.image is None:
            raise self.fail(task, f"step {task.step!r} has no image; resolve the graph with image digests "
                                  f"(`compose-kfp apply` writes them to kfp.lock)")
        in_params: list[dict[str, Any]] = []
        in_artifacts: list[dict[str, Any]] = []
        arg_params: list[dict[str, Any]] = []
        arg_artifacts: list[dict[str, Any]] = []
        values: dict[str, str] = {}
        paths: dict[str, str] = {}
        names_in: dict[str, str] = {}

        def claim(name: str, owner: str) -> str:
            if name in names_in and names_in[name] != owner:
                raise self.fail(task, f"inputs {names_in[name]!r} and {owner!r} of step {task.step!r} both map to "
                                      f"the Argo name {name!r}")
            names_in[name] = owner
            return name

        task_dir = f"{VOLUME_MOUNT}/{task.k8s_name}"
        if self.volume_mode:
            claim(TASK_DIR_PARAM, "(task folder)")
            in_params.append({"name": TASK_DIR_PARAM})
            arg_params.append({"name": TASK_DIR_PARAM, "value": task_dir})
        for arg in task.arguments:
            name = io_name(arg.input)
            if arg.uses_value:
                claim(name, arg.input)
                in_params.append({"name": name})
                arg_params.append({"name": name, "value": self._source_expr(arg)})
                values[arg.input] = f"{{{{inputs.parameters.{name}}}}}"
            if not arg.uses_path:
                continue
            if arg.source == "task" and self.volume_mode:
                pname = claim(f"{name}-path", arg.input)
                up, out = self._upstream_io(arg)
                in_params.append({"name": pname})
                arg_params.append({"name": pname, "value": f"{VOLUME_MOUNT}/{up}/{out}/data"})
                paths[arg.input] = f"{{{{inputs.parameters.{pname}}}}}"
                continue
            aname = claim(name, arg.input)
            in_artifacts.append({"name": aname, "path": input_path(arg.input)})
            if arg.source == "task":
                arg_artifacts.append({"name": aname, "from": self._source_expr(arg, "artifacts")})
            else:
                arg_artifacts.append({"name": aname, "raw": self._source_expr(arg)})
            paths[arg.input] = input_path(arg.input)

        out_params: list[dict[str, Any]] = []
        out_artifacts: list[dict[str, Any]] = []
        out_paths: dict[str, str] = {}
        names_out: dict[str, str] = {}
        for out in task.outputs:
            name = io_name(out.name)
            if name in names_out:
                raise self.fail(task, f"outputs {names_out[name]!r} and {out.name!r} of step {task.step!r} both map "
                                      f"to the Argo name {name!r}")
            names_out[name] = out.name
            fixed = dict(task.component.file_outputs).get(out.name)
            if fixed is not None and self.volume_mode and out.by_path:
                raise self.fail(task, f"output {out.name!r} of step {task.step!r} is written at the fixed path "
                                      f"{fixed} (fileOutputs), which is not on the shared volume, and a task reads "
                                      f"it as a file; use pipeline.data_passing = \"artifacts\" for this pipeline")
            if self.volume_mode and fixed is None:
                path = f"{{{{inputs.parameters.{TASK_DIR_PARAM}}}}}/{name}/data"
            else:
                path = component_output_path(task.component, out.name)
            out_paths[out.name] = path
            if out.as_parameter:
                out_params.append({"name": name, "path": path})
            if out.as_artifact and not self.volume_mode:
                out_artifacts.append({"name": name, "path": path})

        line = task.command_line(values=values, input_paths=paths, output_paths=out_paths,
                                 known_values=task.known_values)
        # An input whose placeholder an `if` left out (or that only decided a condition) is not passed at all.
        used = "\0".join([*line.command, *line.args, *out_paths.values()])
        kept_params = {p["name"] for p in in_params if f"{{{{inputs.parameters.{p['name']}}}}}" in used}
        kept_artifacts = {a["name"] for a in in_artifacts if a["path"] in used}
        in_params = [p for p in in_params if p["name"] in kept_params]
        arg_params = [p for p in arg_params if p["name"] in kept_params]
        in_artifacts = [a for a in in_artifacts if a["name"] in kept_artifacts]
        arg_artifacts = [a for a in arg_artifacts if a["name"] in kept_artifacts]
        settings = task.settings
        env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in task.component.env]
        env += [{"name": k, "value": v} for k, v in settings.env.items()]
        env += [_env_ref(name, ref) for name, ref in task.env_refs]
        secret_volumes = [{"name": dns1123_name(f"secret-{i}-{v.secret}"), "secret": v.secret,
                           "mount_path": v.mount_path} for i, v in enumerate(task.secret_volumes)]
        template: dict[str, Any] = {
            "image": task.image,
            "command": list(line.command),
            "args": list(line.args),
            "env": env,
            "inputs": {"parameters": in_params, "artifacts": in_artifacts},
            "outputs": {"parameters": out_params, "artifacts": out_artifacts},
            "resources": _resources(settings.resources),
            "retry": _retry(settings.retries),
            "timeout": str(settings.timeout) if settings.timeout else None,
            "node_selector": dict(settings.node_selector),
            "tolerations": [t.model_dump(exclude_none=True) for t in settings.tolerations],
            "volume_mounts": ([{"name": VOLUME_NAME, "mountPath": VOLUME_MOUNT}] if self.volume_mode else [])
            + [{"name": v["name"], "mountPath": v["mount_path"], "readOnly": True} for v in secret_volumes],
            "labels": {_LABEL_STEP: dns1123_name(task.step) or "step"},
        }
        template["memoize"] = self._memo_spec(task, arg_artifacts)
        if secret_volumes:  # only then: templates of pipelines without secrets keep their exact content
            template["secret_volumes"] = [{"name": v["name"], "secret": {"secretName": v["secret"]}}
                                          for v in secret_volumes]
        dag_task: dict[str, Any] = {
            "name": task.k8s_name,
            "template": self._template_name(task, template),
            "dependencies": [self.graph.task(d).k8s_name for d in task.dependencies],
            "parameters": arg_params,
            "artifacts": arg_artifacts,
        }
        self._task_of[id(dag_task)] = task
        if not self.graph.has_control_flow:
            return dag_task
        dag_task["depends"] = self._depends(task)
        dag_task["dependencies"] = []
        if task.when is not None:
            dag_task["when"] = argo_expression(task.when, lambda t, o: f"{{{{tasks.{self.graph.task(t).k8s_name}"
                                                                       f".outputs.parameters.{io_name(o)}}}}}")
        if task.loop is not None:
            loop = task.loop
            if loop.source == "literal":
                dag_task["with_items"] = list(loop.items or ())
            elif loop.source == "param":
                dag_task["with_param"] = f"{{{{workflow.parameters.{loop.param}}}}}"
            else:
                dag_task["with_param"] = (f"{{{{tasks.{self.graph.task(loop.task).k8s_name}.outputs.parameters."
                                          f"{io_name(loop.output)}}}}}")
            if loop.parallelism:
                return self._loop_wrapper(task, dag_task, template)
        return dag_task

    def _depends(self, task: Task) -> str:
        """Argo's ``depends`` of ``task``: each upstream ``.Succeeded``, so a skipped (or omitted) upstream
        task skips this one; ``when_upstream_skipped = "run"`` also accepts ``.Skipped``/``.Omitted`` of
        upstream tasks that may be skipped; a collected loop that may run no iteration (an empty list is a
        ``Skipped`` node) is accepted when ``.Skipped`` too."""
        parts = []
        collected = {a.task for a in task.arguments if a.source == "task" and a.collect}
        for d in task.dependencies:
            up = self.graph.task(d)
            name = up.k8s_name
            if task.when_upstream_skipped == "run" and self.graph.may_skip(d):
                parts.append(f"({name}.Succeeded || {name}.Skipped || {name}.Omitted)")
            elif d in collected and up.when is None:
                parts.append(f"({name}.Succeeded || {name}.Skipped)")
            else:
                parts.append(f"{name}.Succeeded")
        return " && ".join(parts)

    def _loop_wrapper(self, task: Task, dag_task: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
        """A looped task with ``parallelism``: Argo limits parallel iterations per template, so the loop runs
        in a DAG template of its own (``parallelism: N``) that receives the upstream values and files as
        inputs and re-exports the aggregated output parameters; the outer DAG task calls that template."""
        inner = dict(dag_task, depends="", when=None)
        self._task_of[id(inner)] = self._task_of[id(dag_task)]
        outer_params, outer_artifacts, in_params, in_artifacts = [], [], [], []
        inner_params, inner_artifacts = [], []
        for p in dag_task["parameters"]:
            if "{{tasks." in str(p["value"]):
                in_params.append({"name": p["name"]})
                outer_params.append(p)
                inner_params.append({"name": p["name"], "value": f"{{{{inputs.parameters.{p['name']}}}}}"})
            else:
                inner_params.append(p)
        for a in dag_task["artifacts"]:
            if "from" in a:
                in_artifacts.append({"name": a["name"]})
                outer_artifacts.append(a)
                inner_artifacts.append({"name": a["name"], "from": f"{{{{inputs.artifacts.{a['name']}}}}}"})
            else:
                inner_artifacts.append(a)
        if "{{tasks." in dag_task.get("with_param", ""):
            in_params.append({"name": "compose-kfp-items"})
            outer_params.append({"name": "compose-kfp-items", "value": dag_task["with_param"]})
            inner["with_param"] = "{{inputs.parameters.compose-kfp-items}}"
        inner.update(parameters=inner_params, artifacts=inner_artifacts)
        outputs = [{"name": p["name"], "from": f"{{{{tasks.{task.k8s_name}.outputs.parameters.{p['name']}}}}}"}
                   for p in template["outputs"]["parameters"]]
        name = self.unique_name(f"{task.k8s_name}-loop")
        self.loop_templates.append({"name": name, "parallelism": task.loop.parallelism, "tasks": [inner],
                                    "inputs": {"parameters": in_params, "artifacts": in_artifacts},
                                    "outputs": outputs})
        return {"name": task.k8s_name, "template": name, "dependencies": [], "depends": dag_task["depends"],
                "when": dag_task.get("when"), "parameters": outer_params, "artifacts": outer_artifacts}

    def _memo_spec(self, task: Task, arg_artifacts: list[dict[str, Any]]) -> bool | None:
        """``True`` when the task's template memoizes (``None`` splits it from templates that do not)."""
        if self.manifest is None or not caches(self.manifest, task):
            return None
        if any("{{item" in str(a.get("raw", "")) for a in arg_artifacts):
            return None  # the item reaches the command only as a file: no key can name it
        return True

    def _caller_key(self, dag_task: dict[str, Any]) -> str:
        """The calling task's key as an Argo key expression body: its base key, and the run-time values of the
        params that reach it (:func:`~compose_kfp.pipeline.cache.runtime_params`)."""
        task = self._task_of[id(dag_task)]
        return " + '/' + ".join([repr(self.keys[task.name].base),
                                  *(f"workflow.parameters[{p!r}]" for p in self.runtime[task.name])])

    def memoize(self, dag_tasks: list[dict[str, Any]]) -> None:
        """Turn each container template's memo spec into Argo's ``memoize`` (see the module docstring); a template
        several tasks call gets the :data:`CACHE_KEY_PARAM` input, which each of them passes."""
        users: dict[str, list[dict[str, Any]]] = {}
        for dag_task in dag_tasks:
            if id(dag_task) in self._task_of:
                users.setdefault(dag_task["template"], []).append(dag_task)
        settings = cache_settings(self.manifest) if self.manifest is not None else schema.CacheConfig()
        for template in self.templates:
            spec, callers = template.pop("memoize", None), users.get(template["name"], [])
            template["memoize"] = None
            if spec is None or not callers:
                continue
            items = sorted({p["name"] for c in callers for p in c["parameters"] if "{{item" in str(p["value"])})
            bodies = [self._caller_key(c) for c in callers]
            if len(set(bodies)) == 1:
                base = bodies[0]
            else:
                template["inputs"]["parameters"].append({"name": CACHE_KEY_PARAM})
                for caller, body in zip(callers, bodies):
                    value = body[1:-1] if "+" not in body else "{{=sprig.sha256sum(" + body + ")}}"
                    caller["parameters"] = [*caller["parameters"], {"name": CACHE_KEY_PARAM, "value": value}]
                base = f"inputs.parameters[{CACHE_KEY_PARAM!r}]"
            body = " + '/' + ".join([base, *(f"inputs.parameters[{p!r}]" for p in items)])
            if "+" in body:
                key = "{{=sprig.sha256sum(" + body + ")}}"
            elif base.startswith("inputs."):
                key = f"{{{{inputs.parameters.{CACHE_KEY_PARAM}}}}}"
            else:
                key = body[1:-1]
            template["memoize"] = {"key": key, "maxAge": argo_max_age(settings.max_age),
                                   "cache": {"configMap": {"name": settings.config_map}}}

    def _template_name(self, task: Task, template: dict[str, Any]) -> str:
        key = json.dumps(template, sort_keys=True)
        if key in self._by_content:
            return self._by_content[key]
        name = self.unique_name(dns1123_name(task.step) or "step")
        self._by_content[key] = name
        self.templates.append({"name": name, **template})
        return name


def _env_ref(name: str, ref: Any) -> dict[str, Any]:
    """A container env entry taking its value from a Secret (``secretKeyRef``) or a ConfigMap (``configMapKeyRef``)."""
    if isinstance(ref, schema.SecretKeyRef):
        return {"name": name, "value_from": {"secretKeyRef": {"name": ref.secret, "key": ref.key}}}
    return {"name": name, "value_from": {"configMapKeyRef": {"name": ref.config_map, "key": ref.key}}}


def _resources(resources: schema.Resources | None) -> dict[str, dict[str, str]] | None:
    """``{requests, limits}``: cpu and memory requested and limited alike; GPUs as ``nvidia.com/gpu`` limits."""
    if resources is None:
        return None
    requests: dict[str, str] = {}
    if resources.cpu:
        requests["cpu"] = resources.cpu
    if resources.memory:
        requests["memory"] = resources.memory
    limits = dict(requests)
    if resources.gpu:
        limits["nvidia.com/gpu"] = str(resources.gpu)
    if not limits:
        return None
    return {"requests": requests, "limits": limits}


def _retry(retries: int) -> dict[str, Any] | None:
    """Argo ``retryStrategy``: ``retries`` more attempts on any failure, backoff 10 s doubling up to 5 min per wait."""
    if not retries:
        return None
    return {"limit": str(retries), "retryPolicy": "Always",
            "backoff": {"duration": "10s", "factor": "2", "cap": "5m"}}
