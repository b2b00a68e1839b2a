"""The dashboard: server-rendered pages and a JSON API over the recorded exchanges."""
