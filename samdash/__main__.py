import sys

from samdash.cli import main

sys.exit(main())
