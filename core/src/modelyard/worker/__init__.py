"""The model process: loads one model and answers calls from the server over a local socket.

`python -m modelyard.worker --fd N` runs it; the server hands it one end of a socket pair. The
link doubles as a lifeline: when the server goes away the socket closes and the worker exits.
"""
