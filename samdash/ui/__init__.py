"""The Streamlit page: the only modules that import ``streamlit``."""
