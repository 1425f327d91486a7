"""samdash: segment anything in your browser, on your own machine."""

import streamlit as st

from samdash.config import Settings
from samdash.ui.image_input import image_picker
from samdash.ui.page import fallback_banner, header
from samdash.ui.sidebar import display_panel, model_panel
from samdash.ui.workspace import workspace_area

st.set_page_config(page_title="samdash · Segment Anything", page_icon="✂️", layout="wide")
settings = Settings.from_env()
with st.sidebar:
    model = model_panel(settings)
    display = display_panel()
header()
fallback_banner(model, settings)
image_picker(settings)
workspace_area(model, display)
