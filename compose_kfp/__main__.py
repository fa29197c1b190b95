"""``python3 -m compose_kfp`` runs the command-line interface (same as ``compose-kfp``)."""

from compose_kfp.cli import main

if __name__ == "__main__":
    main()
