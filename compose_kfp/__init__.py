"""compose-kfp: declarative, daemonless builder of Kubeflow Pipelines images, components and workflows.

This module is deliberately tiny and imports nothing: the in-image runtime
(``compose_kfp.runtime``) is shipped into images together with this file and
must run on any Python 3.8+ with the standard library only.
"""

__version__ = "0.1.0"
