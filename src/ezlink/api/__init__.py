"""HTTP: routes, the OpenAI protocol, auth, and the one error renderer."""
