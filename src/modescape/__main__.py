import sys

from modescape.cli import main

sys.exit(main())
