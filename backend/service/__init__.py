"""Local HTTP service the Blender add-on talks to: training jobs and G-buffer shading.

`create_app(settings)` builds the FastAPI app; `python -m backend serve` runs it with uvicorn.
"""

from backend.service.app import create_app
from backend.service.settings import Settings

__all__ = ["Settings", "create_app"]
