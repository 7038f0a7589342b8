"""The Alipay Open Platform dialect: its wire format (``wire``) and a gateway (``gateway``)
that serves the simulator the way ``openapi.alipay.com/gateway.do`` serves a mini program's
release API (``relctl platform serve --dialect alipay``)."""
