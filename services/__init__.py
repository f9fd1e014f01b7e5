"""The service layer: plain Python, no streamlit import."""
