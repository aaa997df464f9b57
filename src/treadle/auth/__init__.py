"""Authentication and authorization: LangGraph's ``Auth`` (a user's, or the built-in one)."""
