"""samdash: interactive image segmentation with Segment Anything.

The core modules here never import Streamlit; the page lives in ``samdash.ui``.
"""

__version__ = "0.1.0"
