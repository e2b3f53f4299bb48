"""`python -m ray_core ...` is the `ray_core` command (ray_core/scripts.py)."""
import sys

from ray_core.scripts import main

sys.exit(main())
