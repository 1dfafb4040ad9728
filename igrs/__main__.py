import sys

from igrs.cli.main import main

sys.exit(main())
