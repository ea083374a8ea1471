"""The inference scenario of `make bench`: a stub node called directly, through the service, and through LiteLLM."""
