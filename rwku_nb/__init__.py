"""rwku_nb: a thin, tested library behind the RWKU and "To Each (Textual Sequence) Its Own" notebooks."""
from .errors import RwkuError

__version__ = "0.1.0"
__all__ = ["RwkuError", "__version__"]
