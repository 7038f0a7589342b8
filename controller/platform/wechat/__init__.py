"""The WeChat mini program dialect: a gateway (``gateway``) that serves the simulator the way
``api.weixin.qq.com`` serves ``wxa/*`` (``relctl platform serve --dialect wechat``)."""
