"""``ssl-cyto serve``: similar-cell search over one embedding folder as an HTTP API and a web page.

* :mod:`ssl_cyto.serve.state` - loads the folder, index, model and images once (read-only);
* :mod:`ssl_cyto.serve.app` - the FastAPI app (:func:`create_app`);
* :mod:`ssl_cyto.serve.neighbours` - search with label/source filters;
* :mod:`ssl_cyto.serve.uploads` - byte/pixel limits and decoding of uploads, in memory;
* :mod:`ssl_cyto.serve.images` - cell images from shards or source folders, thumbnails;
* :mod:`ssl_cyto.serve.auth` - the optional token;
* :mod:`ssl_cyto.serve.server` - uvicorn on a socket bound first (:func:`run_server`).
"""

from ssl_cyto.serve.app import create_app
from ssl_cyto.serve.errors import ApiError, ServeError
from ssl_cyto.serve.server import run_server
from ssl_cyto.serve.state import ServeState, load_state
from ssl_cyto.serve.uploads import Limits

__all__ = ["ApiError", "Limits", "ServeError", "ServeState", "create_app", "load_state", "run_server"]
