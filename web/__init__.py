"""The aiohttp application: factory, handlers, websocket feed and static dashboard."""
