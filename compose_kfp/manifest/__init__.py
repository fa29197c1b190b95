"""The manifest: everything about ``kfp.toml`` beside its models (:mod:`compose_kfp.schema`).

Modules, in the order of their imports (each imports only those above it, and
:mod:`compose_kfp.schema`):

- :mod:`.keys`: where keys are in the text: ``KeyIndex`` (key path -> line) and ``dotted``.
- :mod:`.problems`: error text: ``Problems`` (key path, message) -> one ``ConfigError`` of
  ``FILE:LINE: KEY: MESSAGE.`` lines, "did you mean", literal secrets refused (``scan_secrets``).
- :mod:`.checks`: checks across keys: files that must exist, names that tasks refer to, cycles.
- :mod:`.fences`: the project fence: named paths inside the project, a writable output folder, what
  compose-kfp writes (never a layer input).
- :mod:`.load`: the one way in: ``find_manifest``, ``load_manifest`` -> ``LoadedManifest``, the
  environment-variable overrides (``ENV_VARS``), the default layers.
- :mod:`.docs`: the JSON Schema and the README's key reference, generated from the models.
- :mod:`.project`: the checked project (``load_project``: manifest, step components, task graph).
- :mod:`.scaffold`: ``compose-kfp init``: a starting ``kfp.toml`` and the ``.gitignore`` line.
"""
