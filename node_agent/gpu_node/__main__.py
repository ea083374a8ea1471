import sys

from gpu_node.cli import main

sys.exit(main())
