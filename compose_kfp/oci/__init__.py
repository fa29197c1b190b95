"""A small, self-contained container image library.

``compose_kfp.oci`` writes and reads OCI / Docker v2.2 images and speaks the
OCI distribution protocol. It never imports from the rest of ``compose_kfp``
(see ``DESIGN.md``) and knows nothing about Kubeflow Pipelines.
"""
