"""ssl_cyto.evaluation."""
