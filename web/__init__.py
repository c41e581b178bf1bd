"""The aiohttp application over the runtime: factory, handlers, websocket feed and static dashboard."""
