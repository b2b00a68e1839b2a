"""ASGI entry point of the dashboard: `uvicorn app.web.main:app`."""

from app.settings import get_settings
from app.web.app import create_app

app = create_app(get_settings())
