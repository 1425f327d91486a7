"""samdash: segment anything in your browser, on your own machine."""

import streamlit as st

from samdash.config import Settings
from samdash.ui.dataset_panel import dataset_panel
from samdash.ui.image_input import image_picker
from samdash.ui.image_nav import image_navigator
from samdash.ui.import_panel import import_panel
from samdash.ui.labels import label_panel
from samdash.ui.page import fallback_banner, header
from samdash.ui.projects import follow_url, keep_url, project_notice, project_panel, project_store
from samdash.ui.server_folder import server_folder_panel
from samdash.ui.sidebar import display_panel, model_panel
from samdash.ui.workspace import workspace_area

st.set_page_config(page_title="samdash · Segment Anything", page_icon="✂️", layout="wide")
settings = st.session_state["settings"] = Settings.from_env()
store = project_store()
if store is not None:
    follow_url(store)
with st.sidebar:
    project_panel(store)
    label_panel(store)
    dataset_panel(store)
    import_panel(store)
    server_folder_panel(settings, store)
    model = model_panel(settings)
    display = display_panel()
header()
fallback_banner(model, settings)
project_notice()
image_picker(settings, store)
image_navigator(store)
workspace_area(model, display)
keep_url()
