"""``python -m cv_client``: the ``cv`` command."""

import sys

from cv_client.cli import main

sys.exit(main())
