"""The manifest: ``kfp.toml`` loading, error text and key positions beside the models of :mod:`compose_kfp.schema`, and the checked project (:mod:`.project`)."""
