import sys

from igrs.cli import main

sys.exit(main())
