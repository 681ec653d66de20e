"""``python -m bioxen_shell`` is the ``bioxen`` command."""
import sys

from .cli import main

sys.exit(main())
