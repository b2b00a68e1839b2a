"""llmtap: a logging proxy appliance for chat traffic between a front end and a model server."""
