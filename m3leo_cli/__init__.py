"""m3leo: the M3LEO dataset manager (library and `m3leo` command).

The library never imports typer or rich; commands in ``m3leo_cli.cli`` call into it.
"""

__version__ = "0.1.0"

from .config import Settings, load_settings
from .errors import M3leoError
from .selection import Selection, build_selection

__all__ = ["M3leoError", "Selection", "Settings", "__version__", "build_selection", "load_settings"]
