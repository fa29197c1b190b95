"""``python -m compose_kfp.cli``: the same as ``compose-kfp``."""

from compose_kfp.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
