"""The camera agent: reads frames from cameras, video files, image folders or snapshot URLs,
skips the ones that did not change, and sends the rest to a framewatch API
(`framewatch agent`, docs/agent.md).

One process runs any number of cameras; each camera grabs in a thread of its own and sends
through the asyncio loop, with reconnects, a bounded buffer while the API is away, and a
status report (log lines and, optionally, JSON on 127.0.0.1).
"""
