"""treadle server: the LangGraph Platform HTTP API."""
