"""The OpenAI wire formats, one module per API family: parse requests, render responses."""
