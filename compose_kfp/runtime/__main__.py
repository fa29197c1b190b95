"""``python3 -m compose_kfp.runtime``: run one step function (see :mod:`compose_kfp.runtime.entrypoint`)."""

import sys

from compose_kfp.runtime.entrypoint import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
