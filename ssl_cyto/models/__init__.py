"""ssl_cyto.models."""
