"""WeChat mini programs: relctl's adapter (``adapter``, ``--platform wechat:``, with its
``ledger`` of what WeChat's API does not hold) and a gateway (``gateway``) that serves the
simulator the way ``api.weixin.qq.com`` serves ``wxa/*`` (``relctl platform serve --dialect
wechat``), so the adapter is tested without a WeChat account."""
