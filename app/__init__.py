"""llmtap: a logging proxy appliance between a chat front end and a model server."""
