"""The adapter protocol over HTTP: the contract, the client adapter and the server.

``contract`` (paths, headers, the error envelope), ``client`` (``HttpPlatform``, what
``--platform http(s)://...`` opens) and ``server`` (``create_app``, what ``relctl platform
serve`` runs). The published form is ``schemas/platform-openapi.yaml``.
"""
