import sys
from pathlib import Path

# test support modules (tests/ldm_layout.py) import as top-level modules
sys.path.insert(0, str(Path(__file__).parent))
