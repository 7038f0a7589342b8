"""The Alipay Open Platform: its wire format (``wire``), a gateway (``gateway``) that serves the
simulator the way ``openapi.alipay.com/gateway.do`` serves a mini program's release API
(``relctl platform serve --dialect alipay``), and relctl's own adapter (``adapter``, over the
signed client ``client``) that ``--platform alipay:`` opens."""
