"""relctl: a GitOps release controller for mini programs published to partner super apps.

Release intents live as YAML manifests in a git repository; the controller validates them and
drives each release on the platform toward what the main branch says, writing status back.
See ``docs/architecture.md`` for how the modules fit together.
"""

__version__ = "0.1.0"
