import sys

from audiomask.cli import main

sys.exit(main())
