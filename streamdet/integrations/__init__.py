"""Where detected events go besides the terminal: :mod:`streamdet.integrations.mqtt` (MQTT and Home Assistant).

Nothing is imported here; each integration imports its client library only when it is used.
"""
