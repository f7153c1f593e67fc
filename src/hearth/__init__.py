"""Hearth: a FHIR R4 server with the HIPAA Security Rule's technical safeguards built in."""

__all__ = ["__version__"]

__version__ = "0.1.0.dev0"
