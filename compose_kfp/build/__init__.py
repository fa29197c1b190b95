"""The build: kfp.toml -> desired images -> observation -> the plan (:mod:`compose_kfp.planner`) -> apply.

Values (pure: no file, process or socket; the planner imports only these):

- :mod:`.spec`: the desired images as values (``ImageSpec``, ``LayerSpec``) and the config ``Env`` rules.
- :mod:`.state`: the observed state the planner reads (``Observed``, ``BaseState``, ``LayerState``, ...).

Reading and writing:

- :mod:`.images`: ``desired_images``: kfp.toml -> ``ImageSpec`` tuple.
- :mod:`.requirements`: a dependency layer's target, its requirements files and cache key (reads files).
- :mod:`.deps`: installing requirements into a reproducible layer (runs the installer).
- :mod:`.statedir`: the project's state folder ``.compose-kfp`` (``ProjectState``, ``STATE_DIR``).
- :mod:`.credentials`: the keychain of ``[image.auth]`` (``keychain_for``, ``auth_config_path``).
- :mod:`.registries`: the registry client pool (``Registries``), ``registry_ref``, ``download_blob``.
- :mod:`.destination`: where images go: ``Destination`` (a registry repository or an ``oci:PATH`` layout),
  read by observation and written by apply; ``registries_for``.
- :mod:`.pins`: third-party component images pinned by digest.
- :mod:`.lock`: ``kfp.lock`` (format, reading, writing, ``--frozen``) and the digests it records.
- :mod:`.staging`: two-phase writes (``StagedFiles``: stage before the tags, rename after) and file-name
  limits (``name_max``, ``check_name_fits``).
- :mod:`.observe`: the observation: every read planning needs, in one place.
- :mod:`.plan`: ``plan_project``: one complete plan (observe -> pin -> plan -> rendered digests -> lock).
- :mod:`.projectlock`: one ``apply`` at a time per project.
- :mod:`.apply`: ``apply_plan`` executes a plan; ``apply_project`` is the ``apply`` command's flow.
- :mod:`.reqlock`: ``compose-kfp lock``: requirements files pinned into ``.lock.txt`` files.

The rendered outputs (component YAML, workflow) are :mod:`compose_kfp.pipeline.outputs`.
"""
