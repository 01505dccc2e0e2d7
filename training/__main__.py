import sys

from lmrec.local.cli import main

sys.exit(main())
