"""The HTTP edge: the ASGI app, the FHIR REST routes, sign-in pages, OAuth/SMART endpoints and
the administrators' APIs. Handlers authenticate, parse and answer; every PHI path goes through
``hearth.services`` to the repository gate."""
