"""The embedded local stack: moto's server on loopback, stream pollers that invoke the handlers as Lambda's
event source mappings do, and an HTTP server that invokes them as API Gateway does."""
