import sys

from ssl_cyto.cli import main

sys.exit(main())
