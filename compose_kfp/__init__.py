"""compose-kfp: declarative, daemonless builder of Kubeflow Pipelines images, components and workflows.

This module is deliberately tiny and imports nothing at import time: the in-image runtime
(``compose_kfp.runtime``) is shipped into images together with this file and must run on any
Python 3.8+ with the standard library only, and the CLI's start-up must stay fast. The Python API
(:mod:`compose_kfp.api`: ``build_image``, ``extend_image``, ``save_component``, ``load_component``,
``plan``, ``apply``, ``render``, ``run_local``) is reachable from here and imported on first use.
"""

__version__ = "0.1.0"

_API = ("apply", "build_image", "extend_image", "load_component", "plan", "render", "run_local", "save_component")


def __getattr__(name):
    """``compose_kfp.build_image`` and the other API functions of :mod:`compose_kfp.api`, imported on first use."""
    if name in _API:  # by name (PEP 562): compose_kfp.api imports the package, never the reverse at import time
        import importlib

        return getattr(importlib.import_module("compose_kfp.api"), name)
    raise AttributeError("module 'compose_kfp' has no attribute {!r}".format(name))


def __dir__():
    return sorted(list(globals()) + list(_API))
