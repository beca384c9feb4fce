"""Makes the engine tests' helper module (`engine_fakes`: fake cost model and factories) importable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
