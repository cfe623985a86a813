import sys

from ripple.cli import main

sys.exit(main())
