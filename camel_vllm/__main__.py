import sys

from camel_vllm.cli import main

sys.exit(main())
