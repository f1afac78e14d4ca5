"""ssl_cyto.data."""
